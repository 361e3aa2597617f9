/**
 * npm run eval refuses, in one line and before any work, what would give a figure without
 * meaning: an ImageNet baseline for a model that is not an ImageNet classifier, a split the
 * test set does not have, a noise sigma outside (0, 1], and controls or seeds where they cannot
 * run.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'eval.js');
const refusal = (args: string[]) =>
  promisify(execFile)('node', [CLI, ...args]).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );

describe('npm run eval refuses', () => {
  it("AlexNet's normalised mCE for a model that does not classify ImageNet", async () => {
    const { code, stderr } = await refusal(['--baseline', 'alexnet', '--quick']);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /^--baseline alexnet: AlexNet's published errors are on ImageNet's 1000 classes; model fashion-pc has 10 classes \(grey 28 x 28 inputs\)/,
    );
  });

  it('a split other than dev or final', async () => {
    const { code, stderr } = await refusal(['--split', 'test']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^--split test: dev or final/);
  });

  it('a Gaussian sweep with a sigma outside (0, 1], or mixed with the corruption study', async () => {
    for (const sigmas of ['0', '0.1,1.5', 'x']) {
      const { code, stderr } = await refusal(['--gaussian-sweep', sigmas]);
      expect(code).toBe(2);
      expect(stderr).toMatch(/^--gaussian-sweep takes standard deviations in \(0, 1\]/);
    }
    const mixed = await refusal(['--gaussian-sweep', '0.1', '--controls']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toMatch(/^--gaussian-sweep is a study of its own/);
  });

  it('controls or seeds against servers, and an untrained control without --controls', async () => {
    const remote = ['--endpoint', 'http://127.0.0.1:9'];
    expect((await refusal([...remote, '--controls'])).stderr).toMatch(
      /^--controls run on the local engine only/,
    );
    expect((await refusal([...remote, '--seeds', '2'])).stderr).toMatch(
      /^--seeds runs on the local engine only/,
    );
    const alone = await refusal(['--untrained-feedback', 'x']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/^--untrained-feedback is a control: add --controls/);
  });
});
