/**
 * The 19 ImageNet-C corruptions (Hendrycks & Dietterich, 2019) with the names, severities and
 * parameters of the reference implementation (the `imagecorruptions` package), written anew.
 * Deterministic ones equal the reference to within JPEG and rounding differences; random ones
 * draw from a seeded generator of ours and match the reference's statistics
 * (test/robustness/imagenet-c.test.ts, against fixtures made by the reference).
 *
 * Like the reference, every image is corrupted as RGB (a grey image as three equal channels) at
 * its own size, with the parameters it uses for ImageNet's 224-pixel images. Nothing is scaled
 * for other sizes, small ones included: at Fashion-MNIST's 28 pixels the blurs are relatively
 * eight times stronger than on ImageNet (docs/robustness.md says what that means).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readRgbFile } from '../../image/codecs.js';
import { defocusBlur, gaussianBlur, glassBlur, motionBlur, zoomBlur } from './blur.js';
import { brightness, contrast, elasticTransform, jpegCompression, pixelate, saturate } from './digital.js';
import { additiveGaussian, gaussianNoise, impulseNoise, shotNoise, speckleNoise } from './noise.js';
import { Random } from './random.js';
import type { Raster } from './raster.js';
import { spatter } from './spatter.js';
import { fog, frost, snow, type FrostAssets } from './weather.js';

export { corruptionSeed } from './random.js';

/** ImageNet-C's 15 benchmark corruptions, in the reference's order. */
export const BENCHMARK_CORRUPTIONS = [
  'gaussian_noise',
  'shot_noise',
  'impulse_noise',
  'defocus_blur',
  'glass_blur',
  'motion_blur',
  'zoom_blur',
  'snow',
  'frost',
  'fog',
  'brightness',
  'contrast',
  'elastic_transform',
  'pixelate',
  'jpeg_compression',
] as const;

/** The 4 validation corruptions, kept apart from the benchmark's mCE. */
export const VALIDATION_CORRUPTIONS = ['speckle_noise', 'gaussian_blur', 'spatter', 'saturate'] as const;

export const CORRUPTIONS = [...BENCHMARK_CORRUPTIONS, ...VALIDATION_CORRUPTIONS] as const;
export type Corruption = (typeof CORRUPTIONS)[number];

export const FAMILIES = ['noise', 'blur', 'weather', 'digital'] as const;
export type Family = (typeof FAMILIES)[number];

/** ImageNet-C's families; each validation corruption joins the family it resembles. */
export const FAMILY_OF: Record<Corruption, Family> = {
  gaussian_noise: 'noise',
  shot_noise: 'noise',
  impulse_noise: 'noise',
  speckle_noise: 'noise',
  defocus_blur: 'blur',
  glass_blur: 'blur',
  motion_blur: 'blur',
  zoom_blur: 'blur',
  gaussian_blur: 'blur',
  snow: 'weather',
  frost: 'weather',
  fog: 'weather',
  brightness: 'weather',
  spatter: 'weather',
  contrast: 'digital',
  elastic_transform: 'digital',
  pixelate: 'digital',
  jpeg_compression: 'digital',
  saturate: 'digital',
};

export const SEVERITIES = [1, 2, 3, 4, 5] as const;

/** Corruptions whose output depends on the seed. */
export const RANDOM_CORRUPTIONS: ReadonlySet<Corruption> = new Set<Corruption>([
  'gaussian_noise',
  'shot_noise',
  'impulse_noise',
  'speckle_noise',
  'glass_blur',
  'motion_blur',
  'snow',
  'frost',
  'fog',
  'spatter',
  'elastic_transform',
]);

export const isCorruption = (name: string): name is Corruption =>
  (CORRUPTIONS as readonly string[]).includes(name);

/**
 * `all`, `benchmark`, `validation`, a family (`noise`, `blur`, `weather`, `digital`: benchmark
 * and validation members) or names, comma-separated, in any mix. Throws on an unknown word,
 * naming it and what is known.
 */
export function parseCorruptions(spec: string): Corruption[] {
  const chosen = new Set<Corruption>();
  for (const word of spec
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean)) {
    if (word === 'all') CORRUPTIONS.forEach((c) => chosen.add(c));
    else if (word === 'benchmark') BENCHMARK_CORRUPTIONS.forEach((c) => chosen.add(c));
    else if (word === 'validation') VALIDATION_CORRUPTIONS.forEach((c) => chosen.add(c));
    else if ((FAMILIES as readonly string[]).includes(word))
      CORRUPTIONS.filter((c) => FAMILY_OF[c] === word).forEach((c) => chosen.add(c));
    else if (isCorruption(word)) chosen.add(word);
    else
      throw new RangeError(
        `unknown corruption '${word}': use all, benchmark, validation, ${FAMILIES.join(', ')} or names from ${CORRUPTIONS.join(', ')}`,
      );
  }
  if (chosen.size === 0) throw new RangeError('no corruption named');
  return CORRUPTIONS.filter((c) => chosen.has(c));
}

/** `1,3,5`, `1-5` or a mix; each 1..5. */
export function parseSeverities(spec: string): number[] {
  const chosen = new Set<number>();
  for (const word of spec.split(',').map((w) => w.trim())) {
    const range = /^([1-5])(?:-([1-5]))?$/.exec(word);
    if (!range) throw new RangeError(`severities are 1..5, as '1,3,5' or '1-5'; got '${word}'`);
    const from = Number(range[1]);
    const to = Number(range[2] ?? range[1]);
    for (let s = from; s <= to; s++) chosen.add(s);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** What some corruptions read from disk: the frost photographs. */
export interface CorruptionAssets {
  frost: FrostAssets;
}

export const FROST_DIR = fileURLToPath(
  new URL('../../../third_party/imagecorruptions/frost/', import.meta.url),
);

export async function loadCorruptionAssets(dir = FROST_DIR): Promise<CorruptionAssets> {
  const files = (await readdir(dir)).filter((f) => /^frost\d+\.(png|jpg)$/.test(f));
  files.sort((a, b) => parseInt(a.slice(5), 10) - parseInt(b.slice(5), 10));
  if (files.length < 5)
    throw new Error(`${dir}: expected the frost photographs frost1..frost6, found ${files.join(', ')}`);
  const pictures = await Promise.all(
    files.map(async (f) => {
      const { width, height, data } = await readRgbFile(path.join(dir, f));
      return { width, height, channels: 3, data: Float64Array.from(data) };
    }),
  );
  return { frost: { pictures } };
}

/** An 8-bit image, interleaved (H x W x channels). */
export interface Pixels {
  width: number;
  height: number;
  /** 1 (grey), 3 (RGB) or 4 (RGBA: the alpha is dropped) */
  channels: number;
  data: Uint8Array;
}

function toRgb({ width, height, channels, data }: Pixels): Raster {
  if (![1, 3, 4].includes(channels)) throw new RangeError(`images have 1, 3 or 4 channels, got ${channels}`);
  const out = new Float64Array(width * height * 3);
  for (let p = 0; p < width * height; p++)
    for (let c = 0; c < 3; c++) out[3 * p + c] = data[p * channels + (channels === 1 ? 0 : c)]!;
  return { width, height, channels: 3, data: out };
}

/**
 * The corrupted copy of an image, as RGB (a grey image too, as the reference returns it): the
 * corruption's output cut to 8 bits as the reference does (numpy's uint8, which truncates).
 */
export async function corruptPixels(
  image: Pixels,
  corruption: Corruption,
  severity: number,
  seed: number,
  assets: CorruptionAssets,
): Promise<Pixels> {
  if (!Number.isInteger(severity) || severity < 1 || severity > 5)
    throw new RangeError(`severity must be 1..5, got ${severity}`);
  const x = toRgb(image);
  return toPixels(await apply(x, corruption, severity, new Random(seed), assets));
}

/**
 * Additive Gaussian noise of standard deviation `sigma` in [0, 1] pixel units, clipped and kept
 * at 8 bits as corruptPixels() keeps its images: the Predify paper's first experiment, at any sigma.
 * With `grey`, one draw per pixel for all three channels, so that a grey model, which averages
 * them, sees noise of that sigma (three independent draws would average to about 0.75 sigma).
 */
export function addGaussianNoise(image: Pixels, sigma: number, seed: number, grey = false): Pixels {
  if (!(sigma > 0 && sigma <= 1)) throw new RangeError(`sigma must be in (0, 1], got ${sigma}`);
  const rng = new Random(seed);
  const x = toRgb(image);
  if (!grey) return toPixels(additiveGaussian(x, sigma, rng));
  const out = { ...x, data: new Float64Array(x.data.length) };
  for (let p = 0; p < x.data.length; p += 3) {
    const n = sigma * rng.normal();
    for (let c = 0; c < 3; c++) out.data[p + c] = Math.min(1, Math.max(0, x.data[p + c]! / 255 + n)) * 255;
  }
  return toPixels(out);
}

function toPixels(out: Raster): Pixels {
  const data = new Uint8Array(out.data.length);
  for (let k = 0; k < data.length; k++) {
    const v = out.data[k]!;
    data[k] = v > 0 ? Math.min(255, Math.trunc(v)) : 0;
  }
  return { width: out.width, height: out.height, channels: 3, data };
}

function apply(
  x: Raster,
  corruption: Corruption,
  severity: number,
  rng: Random,
  assets: CorruptionAssets,
): Raster | Promise<Raster> {
  switch (corruption) {
    case 'gaussian_noise':
      return gaussianNoise(x, severity, rng);
    case 'shot_noise':
      return shotNoise(x, severity, rng);
    case 'impulse_noise':
      return impulseNoise(x, severity, rng);
    case 'speckle_noise':
      return speckleNoise(x, severity, rng);
    case 'defocus_blur':
      return defocusBlur(x, severity);
    case 'glass_blur':
      return glassBlur(x, severity, rng);
    case 'motion_blur':
      return motionBlur(x, severity, rng);
    case 'zoom_blur':
      return zoomBlur(x, severity);
    case 'gaussian_blur':
      return gaussianBlur(x, severity);
    case 'snow':
      return snow(x, severity, rng);
    case 'frost':
      return frost(x, severity, rng, assets.frost);
    case 'fog':
      return fog(x, severity, rng);
    case 'spatter':
      return spatter(x, severity, rng);
    case 'brightness':
      return brightness(x, severity);
    case 'contrast':
      return contrast(x, severity);
    case 'saturate':
      return saturate(x, severity);
    case 'elastic_transform':
      return elasticTransform(x, severity, rng);
    case 'pixelate':
      return pixelate(x, severity);
    case 'jpeg_compression':
      return jpegCompression(x, severity);
  }
}
