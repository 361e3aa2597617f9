/**
 * Every relative link in the project's Markdown (README, docs/, BENCHMARKS, ...) leads
 * somewhere: the file exists, and an anchor names a heading of it (as GitHub makes heading
 * ids). Moving a page or renaming a heading without fixing its links fails here.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './paths.js';

const SKIP = new Set(['node_modules', 'build', 'dist', '.git', 'repo', 'third_party', 'coverage']);

async function markdownFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (SKIP.has(entry.name) || entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await markdownFiles(full)));
    else if (entry.name.endsWith('.md')) out.push(full);
  }
  return out;
}

/** GitHub's heading ids: lower case, punctuation dropped, each space a dash, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = !fenced && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const text = heading[1]!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .toLowerCase();
    const base = text.replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

/** Relative links of a Markdown text, outside code: [text](target) and [text]: target. */
function linksOf(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  const links = [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
  links.push(...[...text.matchAll(/^\s*\[[^\]]+\]:\s+(\S+)/gm)].map((m) => m[1]!));
  return links.filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l));
}

describe('links in the Markdown', () => {
  it('every relative link and anchor resolves', async () => {
    const files = await markdownFiles(ROOT);
    expect(files.length).toBeGreaterThan(10);
    const anchors = new Map<string, Set<string>>();
    const anchorsFor = async (file: string) => {
      if (!anchors.has(file)) anchors.set(file, anchorsOf(await readFile(file, 'utf8')));
      return anchors.get(file)!;
    };
    const broken: string[] = [];
    for (const file of files) {
      for (const link of linksOf(await readFile(file, 'utf8'))) {
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const resolved = target === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(target));
        const where = `${path.relative(ROOT, file)}: ${link}`;
        if (!existsSync(resolved)) {
          broken.push(`${where} (no such file)`);
          continue;
        }
        if (anchor && resolved.endsWith('.md') && statSync(resolved).isFile()) {
          if (!(await anchorsFor(resolved)).has(anchor)) broken.push(`${where} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
