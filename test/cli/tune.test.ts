/**
 * npm run tune (dist/cli/tune.js, built by `pretest`): it prints the measured curve, and with
 * --write records it in the manifest for this provider and machine, after which an engine
 * with BATCH_MAX_SIZE=auto serves at the recorded size without measuring.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, ROOT } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'tune.js');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'predify-tune-'));
  await cp(DEFAULT_MODEL, dir, { recursive: true, filter: (src) => !src.endsWith('.pt') });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('npm run tune', () => {
  it('records the curve and the choice for this provider and machine, which the server then uses', async () => {
    const { stdout } = await promisify(execFile)('node', [
      CLI,
      '--model',
      dir,
      '--ms-per-size',
      '20',
      '--write',
    ]);
    expect(stdout).toMatch(/\| 1 .*\| 64/s);
    expect(stdout).toMatch(/fashion-pc: batch size \d+ on cpu/);
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    const record = manifest.batchTuning.cpu;
    expect(record).toMatchObject({ cpus: availableParallelism(), threads: 0 });
    expect(record.curve.map((p: { size: number }) => p.size)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    // The rest of the manifest is as it was written.
    const original = JSON.parse(await readFile(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8'));
    expect({ ...manifest, batchTuning: undefined }).toEqual({ ...original, batchTuning: undefined });

    const { app, engine } = await buildTestApp(
      { BATCH_MAX_SIZE: 'auto', ORT_INTRA_OP_THREADS: '0' },
      { modelDir: dir },
    );
    try {
      expect(engine!.batch).toEqual({ size: record.size, source: 'recorded', curve: record.curve });
    } finally {
      await app.close();
    }
  });

  it('refuses a missing --model with usage (exit 2)', async () => {
    const err = await promisify(execFile)('node', [CLI]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(2);
  });
});
