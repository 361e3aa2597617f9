/**
 * The layering of src/ as the code is read: no module imports, directly or through others, a
 * module that imports it back (type imports included: they tie the modules' meanings together
 * all the same), every module opens with a header saying what it is for, and sharp is imported
 * only by src/image/, where decoding lives.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './paths.js';

const SRC = path.join(ROOT, 'src');

async function sources(): Promise<Map<string, string>> {
  const files = (await readdir(SRC, { recursive: true })).filter((f) => f.endsWith('.ts'));
  return new Map(
    await Promise.all(files.map(async (f) => [f, await readFile(path.join(SRC, f), 'utf8')] as const)),
  );
}

/** Each module's imports of other modules of src/, as paths relative to src/. */
function graph(files: Map<string, string>): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const [file, text] of files) {
    const targets = [...text.matchAll(/^(?:import|export)[^'";]*?from '(\.[^']+)'/gm)].map((m) =>
      path.join(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')),
    );
    edges.set(
      file,
      targets.filter((t) => files.has(t)),
    );
  }
  return edges;
}

describe('src/ imports', () => {
  it('form no circle', async () => {
    const edges = graph(await sources());
    expect(edges.size).toBeGreaterThan(100);
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        circles.push([...trail.slice(trail.indexOf(file)), file].join(' -> '));
        return;
      }
      state.set(file, 'open');
      for (const next of edges.get(file) ?? []) visit(next, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of edges.keys()) visit(file, []);
    expect(circles).toEqual([]);
  });

  it('follow a header that says what the module is for', async () => {
    const files = await sources();
    const bare = [...files].filter(([, text]) => !/^(#![^\n]*\n)?\/\*\*/.test(text)).map(([file]) => file);
    expect(files.size).toBeGreaterThan(100);
    expect(bare).toEqual([]);
  });

  it('bring in sharp only in src/image/', async () => {
    const files = await sources();
    const users = [...files].filter(([, text]) => /from 'sharp'/.test(text)).map(([file]) => file);
    expect(users.length).toBeGreaterThan(0);
    expect(users.filter((f) => !f.startsWith(`image${path.sep}`))).toEqual([]);
  });
});
