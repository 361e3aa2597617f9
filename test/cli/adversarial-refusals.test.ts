/**
 * The adversarial commands (dist/cli/blackbox.js and adversarial.js, built by `pretest`) refuse
 * bad input with one line and exit 2, before any work: no server is started and no traffic
 * leaves loopback.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../paths.js';

const run = async (cli: string, args: string[]) => {
  try {
    await promisify(execFile)('node', [path.join(ROOT, 'dist', 'cli', cli), ...args]);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
};

describe('attack:blackbox refuses', () => {
  it.each([
    [['--server', 'http://10.1.2.3:8080'], 'only to a server on loopback'],
    [['--server', 'https://example.com'], 'only to a server on loopback'],
    [['--epsilon', '0'], 'must be in (0, 1]'],
    [['--epsilon', '1.5'], 'must be in (0, 1]'],
    [['--epsilon', '0.002'], 'below one 8-bit level'],
    [['--views', 'logits'], 'final, timesteps or both'],
  ])('%j', async (args, words) => {
    const { code, stderr } = await run('blackbox.js', args);
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toContain(words);
  });
});

describe('eval:adversarial refuses', () => {
  it('a folder that is not an attack run', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'not-a-run-'));
    const { code, stderr } = await run('adversarial.js', [dir]);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      `eval:adversarial: ${dir}: no attack.json (make the run with scripts/attack.py)`,
    );
  });

  it('no run at all', async () => {
    const { code, stderr } = await run('adversarial.js', []);
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toContain('name one attack run');
  });
});
