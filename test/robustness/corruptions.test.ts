/**
 * The corruptions do what their definitions say, measured on large uniform images against the
 * analytic expectations (mean, spread, fraction of pixels hit), and are deterministic per seed.
 */
import { describe, expect, it } from 'vitest';
import {
  corrupt,
  corruptionSeed,
  CORRUPTIONS,
  Random,
  SEVERITIES,
} from '../../src/robustness/corruptions.js';

const side = 200;
const shape = { channels: 1, height: side, width: side };
const uniform = (v: number) => new Float32Array(side * side).fill(v);
const stats = (xs: Float32Array) => {
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / xs.length;
  let sq = 0;
  for (const x of xs) sq += (x - mean) ** 2;
  return { mean, std: Math.sqrt(sq / xs.length) };
};

describe('Random', () => {
  it('draws uniform, normal and Poisson values with the right moments', () => {
    const rng = new Random(7);
    const n = 200_000;
    const u = Float32Array.from({ length: n }, () => rng.next());
    const z = Float32Array.from({ length: n }, () => rng.normal());
    const p = Float32Array.from({ length: n }, () => rng.poisson(4));
    expect(stats(u).mean).toBeCloseTo(0.5, 2);
    expect(stats(u).std).toBeCloseTo(Math.sqrt(1 / 12), 2);
    expect(stats(z).mean).toBeCloseTo(0, 2);
    expect(stats(z).std).toBeCloseTo(1, 2);
    expect(stats(p).mean).toBeCloseTo(4, 1);
    expect(stats(p).std ** 2).toBeCloseTo(4, 1);
  });
});

describe('corrupt', () => {
  it('is deterministic per seed, and seeds differ per corruption, severity and image', () => {
    const image = uniform(0.5);
    const a = corrupt(image, shape, 'gaussian-noise', 3, 42);
    expect(corrupt(image, shape, 'gaussian-noise', 3, 42)).toEqual(a);
    expect(corrupt(image, shape, 'gaussian-noise', 3, 43)).not.toEqual(a);
    const seeds = new Set([
      corruptionSeed('gaussian-noise', 3, 0),
      corruptionSeed('gaussian-noise', 3, 1),
      corruptionSeed('gaussian-noise', 4, 0),
      corruptionSeed('shot-noise', 3, 0),
    ]);
    expect(seeds.size).toBe(4);
  });

  it.each([1, 2, 3])('gaussian noise at severity %i adds N(0, sigma^2)', (severity) => {
    const sigma = SEVERITIES['gaussian-noise'].values[severity - 1]!;
    const s = stats(corrupt(uniform(0.5), shape, 'gaussian-noise', severity, 1));
    expect(s.mean).toBeCloseTo(0.5, 2);
    expect(s.std / sigma).toBeCloseTo(1, 1);
  });

  it('shot noise keeps the mean and has variance x / photons', () => {
    const photons = SEVERITIES['shot-noise'].values[1]!;
    const s = stats(corrupt(uniform(0.4), shape, 'shot-noise', 2, 1));
    expect(s.mean).toBeCloseTo(0.4, 2);
    expect(s.std ** 2 / (0.4 / photons)).toBeCloseTo(1, 1);
  });

  it('impulse noise sets the given fraction of pixels to 0 or 1, half each', () => {
    const amount = SEVERITIES['impulse-noise'].values[3]!;
    const out = corrupt(uniform(0.5), shape, 'impulse-noise', 4, 1);
    const zeros = out.filter((v) => v === 0).length / out.length;
    const ones = out.filter((v) => v === 1).length / out.length;
    expect(zeros + ones).toBeCloseTo(amount, 2);
    expect(zeros / (zeros + ones)).toBeCloseTo(0.5, 1);
  });

  it('speckle noise scales with the pixel value', () => {
    const sigma = SEVERITIES['speckle-noise'].values[0]!;
    expect(stats(corrupt(uniform(0.5), shape, 'speckle-noise', 1, 1)).std / (0.5 * sigma)).toBeCloseTo(1, 1);
    expect(stats(corrupt(uniform(0), shape, 'speckle-noise', 5, 1)).std).toBe(0);
  });

  it('gaussian blur keeps a constant image and spreads a point with the given sigma', () => {
    expect(corrupt(uniform(0.3), shape, 'gaussian-blur', 5, 0).every((v) => Math.abs(v - 0.3) < 1e-6)).toBe(
      true,
    );
    const sigma = SEVERITIES['gaussian-blur'].values[4]!;
    const point = new Float32Array(side * side);
    const c = side / 2;
    point[c * side + c] = 1;
    const out = corrupt(point, shape, 'gaussian-blur', 5, 0);
    let mass = 0;
    let variance = 0;
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) {
        mass += out[y * side + x]!;
        variance += out[y * side + x]! * (x - c) ** 2;
      }
    expect(mass).toBeCloseTo(1, 4);
    // The discrete kernel truncated at 3 sigma has a slightly smaller variance than sigma^2.
    expect(Math.sqrt(variance / mass) / sigma).toBeCloseTo(1, 1);
  });

  it('contrast keeps the mean and scales deviations from it by the factor', () => {
    const image = Float32Array.from({ length: side * side }, (_, k) => (k % 2 ? 0.8 : 0.2));
    const factor = SEVERITIES.contrast.values[2]!;
    const out = corrupt(image, shape, 'contrast', 3, 0);
    expect(stats(out).mean).toBeCloseTo(0.5, 5);
    expect(stats(out).std).toBeCloseTo(0.3 * factor, 5);
  });

  it.each(CORRUPTIONS)('%s changes a natural-looking image more at each severity', (corruption) => {
    const image = Float32Array.from(
      { length: side * side },
      (_, k) => 0.5 + 0.4 * Math.sin(k / 37) * Math.cos(k / 11),
    );
    const change = [1, 2, 3, 4, 5].map((severity) => {
      const out = corrupt(image, shape, corruption, severity, 3);
      let d = 0;
      for (let k = 0; k < out.length; k++) d += Math.abs(out[k]! - image[k]!);
      return d;
    });
    for (let s = 1; s < 5; s++) expect(change[s]!).toBeGreaterThan(change[s - 1]!);
    expect(corrupt(image, shape, corruption, 5, 3).every((v) => v >= 0 && v <= 1)).toBe(true);
  });

  it('refuses a severity outside 1..5', () => {
    expect(() => corrupt(uniform(0.5), shape, 'contrast', 0, 0)).toThrow(/severity must be 1..5/);
  });
});
