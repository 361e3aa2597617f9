/**
 * Our ImageNet-C corruptions against the reference implementation's own outputs
 * (test/fixtures/corruptions, made by scripts/make_corruption_fixtures.py from the
 * `imagecorruptions` package): deterministic corruptions to a PSNR of 35 dB or more, random
 * ones to the reference's mean absolute change and its standard deviation within 10%, on an
 * RGB 224-pixel picture, a grey 56 x 40 one and a 28-pixel Fashion-MNIST image, at severities
 * 1, 3 and 5.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  corruptPixels,
  CORRUPTIONS,
  loadCorruptionAssets,
  parseCorruptions,
  parseSeverities,
  RANDOM_CORRUPTIONS,
  type CorruptionAssets,
  type Pixels,
} from '../../src/robustness/imagenet-c/index.js';
import { FIXTURES } from '../paths.js';

const DIR = path.join(FIXTURES, 'corruptions');
const IMAGES = ['rgb224', 'grey40x56', 'fashion28'] as const;
const SEVERITIES = [1, 3, 5];
// Enough draws that our mean is steady: the statistics of frost (which photograph), fog, snow
// and spatter (where the drops fall) vary most from draw to draw, and more on small images.
// The reference's means are over 64 draws at 224 pixels and 400 on the small images.
const SEEDS = (image: string, name: string) =>
  image !== 'rgb224' ? 400 : ['frost', 'fog', 'snow', 'spatter'].includes(name) ? 48 : 12;

interface Stat {
  meanAbs: number;
  std: number;
}
const stats = JSON.parse(readFileSync(path.join(DIR, 'stats.json'), 'utf8')) as {
  images: Record<string, Record<string, Stat>>;
};

async function readPng(file: string): Promise<Pixels> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data) };
}

const rgbValue = (p: Pixels, k: number) =>
  p.data[Math.floor(k / 3) * p.channels + (p.channels === 1 ? 0 : k % 3)]!;

function psnr(a: Pixels, b: Pixels): number {
  let se = 0;
  const n = a.width * a.height * 3;
  for (let k = 0; k < n; k++) se += (rgbValue(a, k) - rgbValue(b, k)) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / n));
}

function changeStats(clean: Pixels, corrupted: Pixels): Stat {
  const n = clean.width * clean.height * 3;
  let sumAbs = 0;
  let sum = 0;
  let sq = 0;
  for (let k = 0; k < n; k++) {
    const d = rgbValue(corrupted, k) - rgbValue(clean, k);
    sumAbs += Math.abs(d);
    sum += d;
    sq += d * d;
  }
  return { meanAbs: sumAbs / n, std: Math.sqrt(sq / n - (sum / n) ** 2) };
}

let assets: CorruptionAssets;
const clean: Record<string, Pixels> = {};
beforeAll(async () => {
  assets = await loadCorruptionAssets();
  for (const image of IMAGES) clean[image] = await readPng(path.join(DIR, `${image}.png`));
});

describe('deterministic corruptions equal the reference (PSNR >= 35 dB)', () => {
  const names = CORRUPTIONS.filter((c) => !RANDOM_CORRUPTIONS.has(c));
  it.each(IMAGES.flatMap((image) => names.map((name) => [image, name] as const)))(
    '%s %s',
    async (image, name) => {
      for (const severity of SEVERITIES) {
        const reference = await readPng(path.join(DIR, `${image}-${name}-${severity}.png`));
        const ours = await corruptPixels(clean[image]!, name, severity, 0, assets);
        expect(ours.channels).toBe(3);
        expect([ours.width, ours.height]).toEqual([reference.width, reference.height]);
        expect(psnr(ours, reference), `severity ${severity}`).toBeGreaterThanOrEqual(35);
      }
    },
  );
});

describe('random corruptions match the reference statistics (within 10%)', () => {
  const names = CORRUPTIONS.filter((c) => RANDOM_CORRUPTIONS.has(c));
  it.each(IMAGES.flatMap((image) => names.map((name) => [image, name] as const)))(
    '%s %s',
    async (image, name) => {
      for (const severity of SEVERITIES) {
        const reference = stats.images[image]![`${name}/${severity}`]!;
        const seeds = SEEDS(image, name);
        let meanAbs = 0;
        let std = 0;
        for (let seed = 0; seed < seeds; seed++) {
          const s = changeStats(
            clean[image]!,
            await corruptPixels(clean[image]!, name, severity, seed, assets),
          );
          meanAbs += s.meanAbs / seeds;
          std += s.std / seeds;
        }
        const where = `severity ${severity}: ours ${meanAbs.toFixed(2)} / ${std.toFixed(2)}, reference ${reference.meanAbs.toFixed(2)} / ${reference.std.toFixed(2)}`;
        expect(Math.abs(meanAbs / reference.meanAbs - 1), `mean |change|, ${where}`).toBeLessThanOrEqual(0.1);
        expect(Math.abs(std / reference.std - 1), `std of change, ${where}`).toBeLessThanOrEqual(0.1);
      }
    },
    120_000,
  );
});

describe('seeds', () => {
  it('repeat exactly, and another seed gives another draw', async () => {
    for (const name of RANDOM_CORRUPTIONS) {
      const a = await corruptPixels(clean['grey40x56']!, name, 3, 7, assets);
      const b = await corruptPixels(clean['grey40x56']!, name, 3, 7, assets);
      const c = await corruptPixels(clean['grey40x56']!, name, 3, 8, assets);
      expect(Buffer.from(a.data).equals(Buffer.from(b.data)), name).toBe(true);
      expect(Buffer.from(a.data).equals(Buffer.from(c.data)), name).toBe(false);
    }
  });
});

describe('images as users hold them', () => {
  it('takes grey, RGB and RGBA pixels, and gives RGB of the same size', async () => {
    const rgb = clean['rgb224']!;
    const grey: Pixels = { ...rgb, channels: 1, data: rgb.data.filter((_, k) => k % 3 === 0) };
    const rgba: Pixels = {
      ...rgb,
      channels: 4,
      data: Uint8Array.from({ length: rgb.width * rgb.height * 4 }, (_, k) =>
        k % 4 === 3 ? 255 : rgb.data[Math.floor(k / 4) * 3 + (k % 4)]!,
      ),
    };
    const fromRgb = await corruptPixels(rgb, 'contrast', 2, 0, assets);
    expect((await corruptPixels(rgba, 'contrast', 2, 0, assets)).data).toEqual(fromRgb.data);
    const fromGrey = await corruptPixels(grey, 'contrast', 2, 0, assets);
    expect([fromGrey.width, fromGrey.height, fromGrey.channels]).toEqual([224, 224, 3]);
    await expect(corruptPixels({ ...rgb, channels: 2 }, 'contrast', 2, 0, assets)).rejects.toThrow(
      /1, 3 or 4 channels/,
    );
    await expect(corruptPixels(rgb, 'contrast', 6, 0, assets)).rejects.toThrow(/severity must be 1..5/);
  });
});

describe('naming corruptions and severities', () => {
  it('reads sets, families and names, in the reference order', () => {
    expect(parseCorruptions('all')).toHaveLength(19);
    expect(parseCorruptions('benchmark')).toHaveLength(15);
    expect(parseCorruptions('validation')).toEqual(['speckle_noise', 'gaussian_blur', 'spatter', 'saturate']);
    expect(parseCorruptions('noise')).toEqual([
      'gaussian_noise',
      'shot_noise',
      'impulse_noise',
      'speckle_noise',
    ]);
    expect(parseCorruptions('fog, gaussian_noise')).toEqual(['gaussian_noise', 'fog']);
  });
  it('refuses an unknown name, naming it', () => {
    expect(() => parseCorruptions('gaussian_noise,gausian_blur')).toThrow(
      /unknown corruption 'gausian_blur'/,
    );
    expect(() => parseCorruptions(' , ')).toThrow(/no corruption/);
  });
  it('reads severities as lists and ranges', () => {
    expect(parseSeverities('1,3,5')).toEqual([1, 3, 5]);
    expect(parseSeverities('2-4,1')).toEqual([1, 2, 3, 4]);
    expect(() => parseSeverities('0,6')).toThrow(/severities are 1..5/);
  });
});
