/**
 * Every command block (```sh) of the front page and the guides says whether it is run, and by
 * what (a test, .ci/run, scripts/readme-examples.sh, the container smoke test), or why it is not
 * run here (a GPU, a cluster, minutes of work that a test does on fewer images): an HTML comment
 * on the line before it, `<!-- example: run by FILE[, FILE] -->` or
 * `<!-- example: not run here: WHY -->`. A block without one, or naming a file that does not
 * exist, fails here.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './paths.js';

async function pages(): Promise<string[]> {
  const guides = (await readdir(path.join(ROOT, 'docs', 'guides'))).filter((f) => f.endsWith('.md'));
  return ['README.md', ...guides.map((f) => path.join('docs', 'guides', f))];
}

describe('command examples', () => {
  it('each says what runs it, or why nothing does here', async () => {
    const problems: string[] = [];
    let blocks = 0;
    for (const page of await pages()) {
      const lines = (await readFile(path.join(ROOT, page), 'utf8')).split('\n');
      lines.forEach((line, n) => {
        if (line.trim() !== '```sh') return;
        blocks++;
        let k = n - 1;
        while (k >= 0 && lines[k]!.trim() === '') k--;
        const marker = /^<!-- example: (run by (.+)|not run here: (.{10,})) -->$/.exec(
          lines[k]?.trim() ?? '',
        );
        if (!marker) return void problems.push(`${page}:${n + 1}: no example marker`);
        for (const file of marker[2]?.split(',').map((f) => f.trim()) ?? [])
          if (!existsSync(path.join(ROOT, file))) problems.push(`${page}:${n + 1}: ${file} does not exist`);
      });
    }
    expect(blocks).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });

  it('the test command the front page gives is the one CI runs', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const ci = await readFile(path.join(ROOT, '.ci', 'run'), 'utf8');
    const command = 'scripts/setup-debian.sh && ONNXRUNTIME_NODE_INSTALL=skip npm ci && npm test';
    expect(readme).toContain(command);
    expect(ci).toContain(command);
  });
});
