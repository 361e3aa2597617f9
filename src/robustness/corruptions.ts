/**
 * Image corruptions in the spirit of ImageNet-C (Hendrycks & Dietterich, 2019), for
 * greyscale or colour images held as floats in [0, 1], channel-major (C x H x W). Each is
 * deterministic given its seed, so a run can be repeated exactly, and each has five
 * severities whose parameters are listed in SEVERITIES (and in docs/robustness.md).
 *
 * ImageNet-C's scales were chosen for 224 x 224 photographs; the noise parameters carry over
 * as they are (they act per pixel), the blur radii are scaled down for 28 x 28 images.
 */

export const CORRUPTIONS = [
  'gaussian-noise',
  'shot-noise',
  'impulse-noise',
  'speckle-noise',
  'gaussian-blur',
  'contrast',
] as const;
export type Corruption = (typeof CORRUPTIONS)[number];

/** The corruptions that add noise: the ones predictive coding is expected to help with. */
export const NOISE_CORRUPTIONS: readonly Corruption[] = [
  'gaussian-noise',
  'shot-noise',
  'impulse-noise',
  'speckle-noise',
];

/** One parameter per severity 1..5. */
export const SEVERITIES: Record<Corruption, { parameter: string; values: readonly number[] }> = {
  // additive N(0, sigma^2) per pixel
  'gaussian-noise': { parameter: 'sigma', values: [0.08, 0.12, 0.18, 0.26, 0.38] },
  // Poisson(x * photons) / photons: fewer photons, more noise
  'shot-noise': { parameter: 'photons', values: [60, 25, 12, 5, 3] },
  // that fraction of pixels set to 0 or 1 (half each)
  'impulse-noise': { parameter: 'amount', values: [0.03, 0.06, 0.09, 0.17, 0.27] },
  // multiplicative: x + x * N(0, sigma^2)
  'speckle-noise': { parameter: 'sigma', values: [0.15, 0.2, 0.35, 0.45, 0.6] },
  // Gaussian blur with this standard deviation in pixels (ImageNet-C: 1..6 at 224 px)
  'gaussian-blur': { parameter: 'sigma', values: [0.5, 0.75, 1, 1.25, 1.5] },
  // (x - mean) * c + mean
  contrast: { parameter: 'factor', values: [0.4, 0.3, 0.2, 0.1, 0.05] },
};

export interface Shape {
  channels: number;
  height: number;
  width: number;
}

/** A small, fast, seedable generator (mulberry32) with normal and Poisson draws. */
export class Random {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** uniform in [0, 1) */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** standard normal (Box-Muller, both values used) */
  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.#spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  /** Poisson(mean) by Knuth's method: exact, and fast enough for the means used here (< 100) */
  poisson(mean: number): number {
    const limit = Math.exp(-mean);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }
}

/**
 * A seed for one (corruption, severity, image): the same image gets the same noise whatever
 * else is evaluated with it and in whatever order.
 */
export function corruptionSeed(corruption: Corruption, severity: number, index: number, base = 0): number {
  let h = 2166136261 ^ base;
  for (const ch of `${corruption}/${severity}/${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

const clip = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** The corrupted copy of `image` (values in [0, 1]); severity is 1..5. */
export function corrupt(
  image: Float32Array,
  shape: Shape,
  corruption: Corruption,
  severity: number,
  seed: number,
): Float32Array {
  if (!Number.isInteger(severity) || severity < 1 || severity > 5)
    throw new RangeError(`severity must be 1..5, got ${severity}`);
  const c = SEVERITIES[corruption].values[severity - 1]!;
  const rng = new Random(seed);
  const out = new Float32Array(image.length);
  switch (corruption) {
    case 'gaussian-noise':
      for (let k = 0; k < image.length; k++) out[k] = clip(image[k]! + c * rng.normal());
      return out;
    case 'shot-noise':
      for (let k = 0; k < image.length; k++) out[k] = clip(rng.poisson(image[k]! * c) / c);
      return out;
    case 'impulse-noise':
      for (let k = 0; k < image.length; k++) {
        const u = rng.next();
        out[k] = u < c / 2 ? 0 : u < c ? 1 : image[k]!;
      }
      return out;
    case 'speckle-noise':
      for (let k = 0; k < image.length; k++) out[k] = clip(image[k]! + image[k]! * c * rng.normal());
      return out;
    case 'gaussian-blur':
      return gaussianBlur(image, shape, c);
    case 'contrast':
      return contrast(image, shape, c);
  }
}

/** Separable Gaussian blur, radius 3 sigma, edges extended (scipy's 'nearest'). */
function gaussianBlur(image: Float32Array, { channels, height, width }: Shape, sigma: number): Float32Array {
  const radius = Math.ceil(3 * sigma);
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, k) =>
    Math.exp(-((k - radius) ** 2) / (2 * sigma ** 2)),
  );
  const sum = kernel.reduce((a, b) => a + b, 0);
  const weights = kernel.map((w) => w / sum);
  const tmp = new Float32Array(image.length);
  const out = new Float32Array(image.length);
  const at = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  for (let ch = 0; ch < channels; ch++) {
    const base = ch * height * width;
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        let acc = 0;
        for (let k = -radius; k <= radius; k++)
          acc += weights[k + radius]! * image[base + y * width + at(x + k, width)]!;
        tmp[base + y * width + x] = acc;
      }
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        let acc = 0;
        for (let k = -radius; k <= radius; k++)
          acc += weights[k + radius]! * tmp[base + at(y + k, height) * width + x]!;
        out[base + y * width + x] = clip(acc);
      }
  }
  return out;
}

/** Contrast towards each channel's mean, as ImageNet-C does. */
function contrast(image: Float32Array, { channels, height, width }: Shape, factor: number): Float32Array {
  const out = new Float32Array(image.length);
  const plane = height * width;
  for (let ch = 0; ch < channels; ch++) {
    let mean = 0;
    for (let k = 0; k < plane; k++) mean += image[ch * plane + k]!;
    mean /= plane;
    for (let k = 0; k < plane; k++)
      out[ch * plane + k] = clip((image[ch * plane + k]! - mean) * factor + mean);
  }
  return out;
}
