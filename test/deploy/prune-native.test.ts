/**
 * scripts/prune-native.mjs, which the Dockerfile runs: it keeps only the image's own platform's
 * native binaries, and fails the build rather than silently keeping everything when a
 * package's layout is not the one it knows.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../paths.js';

const run = promisify(execFile);
const SCRIPT = path.join(ROOT, 'scripts', 'prune-native.mjs');
let root: string;
afterEach(() => rm(root, { recursive: true, force: true }));

async function layout(files: string[]): Promise<string> {
  root = await mkdtemp(path.join(tmpdir(), 'prune-native-'));
  for (const file of files) {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), '');
  }
  return root;
}

const ORT = 'node_modules/onnxruntime-node/bin/napi-v6';
const full = [
  ...['linux/x64', 'linux/arm64', 'darwin/arm64', 'win32/x64'].map(
    (p) => `${ORT}/${p}/onnxruntime_binding.node`,
  ),
  'node_modules/sharp/package.json',
  'node_modules/@img/sharp-linux-x64/package.json',
  'node_modules/@img/sharp-libvips-linux-x64/package.json',
  'node_modules/@img/sharp-darwin-arm64/package.json',
  'node_modules/@img/colour/package.json',
];

describe('prune-native', () => {
  it('keeps the given platform and architecture only', async () => {
    const dir = await layout(full);
    await run('node', [SCRIPT, '--root', dir, '--platform', 'linux', '--arch', 'x64']);
    expect(existsSync(path.join(dir, ORT, 'linux/x64/onnxruntime_binding.node'))).toBe(true);
    for (const gone of ['linux/arm64', 'darwin', 'win32'])
      expect(existsSync(path.join(dir, ORT, gone))).toBe(false);
    expect(existsSync(path.join(dir, 'node_modules/@img/sharp-linux-x64'))).toBe(true);
    expect(existsSync(path.join(dir, 'node_modules/@img/sharp-darwin-arm64'))).toBe(false);
    expect(existsSync(path.join(dir, 'node_modules/@img/colour'))).toBe(true);
  });

  it.each([
    [
      'onnxruntime-node without its bin directory',
      full.filter((f) => !f.includes('onnxruntime')),
      /onnxruntime-node\/bin is missing/,
    ],
    [
      'no binding for the platform',
      full.filter((f) => !f.includes('linux/x64')),
      /no onnxruntime binding for linux\/x64/,
    ],
    [
      'sharp without its native package',
      full.filter((f) => !f.includes('sharp-libvips-linux')),
      /@img\/sharp-libvips-linux-x64 is missing/,
    ],
  ])('fails the build for %s', async (_name, files, message) => {
    const dir = await layout(files);
    await expect(
      run('node', [SCRIPT, '--root', dir, '--platform', 'linux', '--arch', 'x64']),
    ).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(message),
    });
  });
});
