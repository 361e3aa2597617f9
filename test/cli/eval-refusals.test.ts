/**
 * npm run eval refuses, in one line and before any work, what would give a figure without
 * meaning: an ImageNet baseline for a model that is not an ImageNet classifier, and a split the
 * test set does not have.
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
});
