/**
 * npm run calibrate (dist/cli/calibrate.js, built by `pretest`) on a model other than the
 * shipped one: the imported PEfficientNetB0 (random weights, 32 x 32 RGB) calibrated on an
 * ImageFolder whose folders a class map names. It ends in a manifest the server loads and
 * serves with timesteps=auto and a corruption score; a set it cannot use is refused first.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/robustness/imagenet-c/random.js';
import { buildTestApp } from '../helpers.js';
import { ROOT, TEST_MODELS } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'calibrate.js');
const run = (args: string[]) => promisify(execFile)('node', [CLI, ...args], { maxBuffer: 1 << 24 });

let dir: string;
let modelDir: string;
let images: string;
let classMap: string;

/** A 40 x 48 picture of coloured stripes whose angle and colours depend on the class. */
async function picture(file: string, seed: number, kind: number) {
  const rng = new Random(seed);
  const [w, h] = [48, 40];
  const data = new Uint8Array(w * h * 3);
  const hue = [kind * 90 + rng.int(0, 30), 255 - kind * 80, 60 + kind * 50];
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++)
        data[(y * w + x) * 3 + c] = Math.round(
          hue[c]! * (0.5 + 0.5 * Math.sin((kind ? x : y) / (2 + kind) + c)) + rng.int(0, 20),
        );
  await sharp(data, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'calibrate-'));
  modelDir = path.join(dir, 'model');
  await cp(path.join(TEST_MODELS, 'pefficientnet-b0'), modelDir, { recursive: true });
  images = path.join(dir, 'validation');
  for (const [k, folder] of ['cats', 'dogs'].entries()) {
    await mkdir(path.join(images, folder), { recursive: true });
    for (let i = 0; i < 4; i++) await picture(path.join(images, folder, `${i}.png`), 10 * k + i, k);
  }
  classMap = path.join(dir, 'classes.csv');
  await writeFile(classMap, 'folder,label\ncats,class3\ndogs,7\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const common = () => [
  ...['--model', modelDir, '--images', images, '--class-map', classMap],
  ...['--corruptions', 'gaussian_noise,contrast', '--severities', '3', '--timesteps', '3', '--batch', '4'],
];

describe('npm run calibrate on an imported model and an ImageFolder', () => {
  it('writes a profile, its anytime rule and the corruption score that the server then serves', async () => {
    const { stdout } = await run([
      ...common(),
      '--search',
      'quick',
      '--finalists',
      '1',
      '--write',
      '--default',
      '--out',
      path.join(dir, 'report'),
    ]);
    expect(stdout).toMatch(/corruption score on 8 clean validation images/);
    // --out holds what was printed, and the choice as JSON
    const md = await readFile(path.join(dir, 'report', 'calibration.md'), 'utf8');
    expect(md).toMatch(/^- best: /m);
    expect(md).toMatch(/^- corruption score on 8 clean validation images/m);
    const saved = JSON.parse(await readFile(path.join(dir, 'report', 'calibration.json'), 'utf8'));
    expect(saved.profile).toBe('robust');
    expect(stdout).toMatch(/wrote profile 'robust'/);
    const manifest = JSON.parse(await readFile(path.join(modelDir, 'manifest.json'), 'utf8'));
    const robust = manifest.profiles.robust;
    expect(robust.calibration.conditions).toEqual(['clean', 'gaussian_noise/3', 'contrast/3']);
    // each half described with its own size: 2 of the 4 images of each of the 2 classes
    expect(robust.calibration.split).toMatch(
      /2 classes; 4 images per corruption condition, 4 clean; .*\(the search half\)$/,
    );
    expect(robust.calibration.confirmation.split).toMatch(
      /4 images per corruption condition, 4 clean; .*\(the confirmation half\)$/,
    );
    expect(saved.calibration.split).toBe(robust.calibration.split);
    expect(robust.calibration.confirmation.finalists.length).toBeGreaterThanOrEqual(1);
    expect(robust.recommendedTimesteps).toBeGreaterThanOrEqual(0);
    expect(manifest.corruptionScore.logErrorMean).toHaveLength(manifest.pcoders.length);

    const { app } = await buildTestApp({}, { modelDir });
    try {
      const png = await readFile(path.join(images, 'dogs', '0.png'));
      const res = await app.inject({
        method: 'POST',
        url: `/classify?timesteps=auto&profile=robust`,
        headers: { 'content-type': 'image/png' },
        payload: png,
      });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.model).toBe('pefficientnet-b0');
      expect(typeof body.corruptionScore).toBe('number');
      expect(['settled', 'cap', 'gated']).toContain(body.stop.reason);
      expect(body.steps.length).toBe(body.timesteps + 1);
      // a gated input is answered by its feedforward pass
      if (body.stop.reason === 'gated') expect(body.timesteps).toBe(0);
      expect(body.stop.gate).toBe(manifest.profiles.robust.anytime?.gate);
    } finally {
      await app.close();
    }
  }, 300_000);

  it('makes eval refuse to score the calibrated profile on the images it was calibrated on', async () => {
    // (after the test above has calibrated profile 'robust' on `images`)
    const evalCli = path.join(ROOT, 'dist', 'cli', 'eval.js');
    const args = [
      ...['--model', modelDir, '--profile', 'robust', '--images', images, '--class-map', classMap],
      ...[
        '--corruptions',
        'gaussian_noise',
        '--severities',
        '1',
        '--timesteps',
        '1',
        '--out',
        path.join(dir, 'study'),
      ],
    ];
    const refused = await promisify(execFile)('node', [evalCli, ...args]).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(refused?.code).toBe(2);
    expect(refused?.stderr).toMatch(
      /^8 of the 8 images this study reads were read by npm run calibrate for profile 'robust'/,
    );
    // asked for anyway: it runs, and says so
    await promisify(execFile)('node', [evalCli, ...args, '--allow-calibration-images'], {
      maxBuffer: 1 << 24,
    });
    const results = JSON.parse(await readFile(path.join(dir, 'study', 'results.json'), 'utf8'));
    expect(results.images.calibratedOn).toBe(8);
    expect(await readFile(path.join(dir, 'study', 'results.md'), 'utf8')).toMatch(
      /not held out: 8 images calibrated on/,
    );
  }, 300_000);

  it('refuses a folder the class map does not name, and a model with no default images', async () => {
    await mkdir(path.join(images, 'birds'), { recursive: true });
    await picture(path.join(images, 'birds', '0.png'), 99, 2);
    try {
      await expect(run([...common(), '--search', 'none'])).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/matching no label of the model: birds \(not in the class map\)/),
      });
    } finally {
      await rm(path.join(images, 'birds'), { recursive: true, force: true });
    }
    await expect(run(['--model', modelDir, '--search', 'none'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/name the images to study with --images DIR/),
    });
  }, 60_000);
});
