/**
 * npm run corrupt (dist/cli/corrupt.js, built by `pretest`): ImageNet-C's release layout from a
 * directory of images, the same images for the same seed, and refusals that name the problem.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  corruptionSeed,
  corruptPixels,
  loadCorruptionAssets,
} from '../../src/robustness/imagenet-c/index.js';
import { FIXTURES, ROOT } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'corrupt.js');
const run = (args: string[]) => promisify(execFile)('node', [CLI, ...args]);
const failure = async (args: string[]) => {
  try {
    await run(args);
  } catch (err) {
    return err as { code: number; stderr: string };
  }
  throw new Error('expected the command to fail');
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'corrupt-'));
  await mkdir(path.join(dir, 'in', 'cats'), { recursive: true });
  await mkdir(path.join(dir, 'in', 'boots', 'deep'), { recursive: true });
  await copyFile(
    path.join(FIXTURES, 'corruptions', 'grey40x56.png'),
    path.join(dir, 'in', 'boots', 'deep', 'b.png'),
  );
  await sharp(path.join(FIXTURES, 'corruptions', 'rgb224.png'))
    .resize(48, 40)
    .jpeg()
    .toFile(path.join(dir, 'in', 'cats', 'a.JPG'));
  await writeFile(path.join(dir, 'in', 'cats', 'notes.txt'), 'not an image');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const files = async (root: string) =>
  (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();

describe('npm run corrupt', () => {
  it('writes OUT/<corruption>/<severity>/<path>.png, the corruptions our library computes', async () => {
    const out = path.join(dir, 'out');
    const { stdout } = await run([
      '--images',
      path.join(dir, 'in'),
      '--out',
      out,
      '--corruptions',
      'fog,contrast',
      '--severities',
      '2,5',
      '--seed',
      '3',
    ]);
    expect(stdout).toMatch(/wrote 8 images/);
    const expected = ['contrast', 'fog'].flatMap((c) =>
      ['2', '5'].flatMap((s) => [`${c}/${s}/boots/deep/b.png`, `${c}/${s}/cats/a.png`]),
    );
    expect(await files(out)).toEqual(expected.sort());
    // A grey image stays grey where the corruption keeps it so; the pixels are the library's.
    const written = await sharp(path.join(out, 'fog', '5', 'boots', 'deep', 'b.png'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect((await sharp(path.join(out, 'fog', '5', 'boots', 'deep', 'b.png')).metadata()).channels).toBe(1);
    const source = await sharp(path.join(dir, 'in', 'boots', 'deep', 'b.png'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    const ours = await corruptPixels(
      {
        width: source.info.width,
        height: source.info.height,
        channels: source.info.channels,
        data: new Uint8Array(source.data),
      },
      'fog',
      5,
      corruptionSeed('fog', 5, path.join('boots', 'deep', 'b.png'), 3),
      await loadCorruptionAssets(),
    );
    const writtenRgb = new Uint8Array(written.data);
    expect(Array.from(ours.data.filter((_, k) => k % 3 === 0))).toEqual(
      Array.from(writtenRgb.filter((_, k) => k % written.info.channels === 0)),
    );
  });

  it('gives the same images for the same seed and others for another', async () => {
    const args = (out: string, seed: string) => [
      '--images',
      path.join(dir, 'in'),
      '--out',
      out,
      '--corruptions',
      'gaussian_noise',
      '--severities',
      '3',
      '--seed',
      seed,
    ];
    await run(args(path.join(dir, 's1'), '1'));
    await run(args(path.join(dir, 's1b'), '1'));
    await run(args(path.join(dir, 's2'), '2'));
    const png = (root: string) => readFile(path.join(dir, root, 'gaussian_noise', '3', 'cats', 'a.png'));
    expect((await png('s1')).equals(await png('s1b'))).toBe(true);
    expect((await png('s1')).equals(await png('s2'))).toBe(false);
  });

  it('refuses unknown corruptions and severities, naming them', async () => {
    const refused = (...options: string[]) =>
      failure(['--images', path.join(dir, 'in'), '--out', path.join(dir, 'x'), ...options]);
    const unknown = await refused('--corruptions', 'fog,haze');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown corruption 'haze'/);
    const severity = await refused('--severities', '6');
    expect(severity.stderr).toMatch(/severities are 1..5/);
    const missing = await failure(['--images', path.join(dir, 'nowhere'), '--out', path.join(dir, 'x')]);
    expect(missing.stderr).toMatch(/--images .*nowhere/);
  });

  it('stops at an undecodable image with its path, or lists it with --skip-unreadable', async () => {
    await mkdir(path.join(dir, 'bad', 'c'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'corruptions', 'grey40x56.png'), path.join(dir, 'bad', 'c', 'ok.png'));
    await writeFile(path.join(dir, 'bad', 'c', 'broken.png'), 'not a png');
    const args = [
      '--images',
      path.join(dir, 'bad'),
      '--out',
      path.join(dir, 'bad-out'),
      '--corruptions',
      'contrast',
      '--severities',
      '1',
    ];
    const stopped = await failure(args);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toMatch(/broken\.png: not a decodable image/);
    const { stdout } = await run([...args, '--skip-unreadable']);
    expect(stdout).toMatch(/wrote 1 images/);
    expect(stdout).toMatch(/1 unreadable, skipped:\n\s+c\/broken\.png/);
  });
});
