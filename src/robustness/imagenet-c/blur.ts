/** The blurs of ImageNet-C, on RGB pixels in 0..255; parameters are the reference's. */
import { clip01, clippedZoom, copyOf, filter2d, gaussianFilter, map, raster, type Raster } from './raster.js';
import type { Random } from './random.js';

const at = <T>(values: readonly T[], severity: number) => values[severity - 1]!;

export function gaussianBlur(x: Raster, severity: number): Raster {
  const sigma = at([1, 2, 3, 4, 6], severity);
  return map(
    gaussianFilter(
      map(x, (v) => v / 255),
      sigma,
    ),
    (v) => clip01(v) * 255,
  );
}

/**
 * Blur, then move pixels about locally, then blur again. The reference's pixel "swap" compiles
 * to a copy (its right-hand side is a pair of views, the first of which the first assignment
 * overwrites), so each visited pixel takes its neighbour's value and the neighbour keeps its
 * own; that is what is done here too, in the reference's order.
 */
export function glassBlur(x: Raster, severity: number, rng: Random): Raster {
  const [sigma, delta, iterations] = at(
    [
      [0.7, 1, 2],
      [0.9, 2, 1],
      [1, 2, 3],
      [1.1, 3, 2],
      [1.5, 4, 2],
    ] as const,
    severity,
  );
  const blurred = map(
    gaussianFilter(
      map(x, (v) => v / 255),
      sigma,
    ),
    (v) => Math.trunc(v * 255),
  );
  const { width, height, channels, data } = blurred;
  for (let i = 0; i < iterations; i++)
    for (let h = height - delta; h > delta; h--)
      for (let w = width - delta; w > delta; w--) {
        const dx = rng.int(-delta, delta);
        const dy = rng.int(-delta, delta);
        const from = ((h + dy) * width + w + dx) * channels;
        data.copyWithin((h * width + w) * channels, from, from + channels);
      }
  return map(
    gaussianFilter(
      map(blurred, (v) => v / 255),
      sigma,
    ),
    (v) => clip01(v) * 255,
  );
}

/**
 * The reference's disk: a 17-pixel (or 2r + 1) square holding the aliased disk of radius r,
 * normalised, then smoothed by a 3 x 3 (or 5 x 5) Gaussian of sigma `aliasBlur` as OpenCV's
 * GaussianBlur does it (its kernel, its reflect-101 border).
 */
export function diskKernel(radius: number, aliasBlur: number): Raster {
  const half = radius <= 8 ? 8 : radius;
  const size = 2 * half + 1;
  const disk = raster(size, size, 1);
  let count = 0;
  for (let y = -half; y <= half; y++)
    for (let x = -half; x <= half; x++)
      if (x * x + y * y <= radius * radius) {
        disk.data[(y + half) * size + x + half] = 1;
        count++;
      }
  for (let k = 0; k < disk.data.length; k++) disk.data[k] = Math.fround(disk.data[k]! / count);
  const ksize = radius <= 8 ? 3 : 5;
  const g = new Float64Array(ksize);
  let sum = 0;
  for (let k = 0; k < ksize; k++)
    sum += g[k] = Math.exp(-((k - (ksize - 1) / 2) ** 2) / (2 * aliasBlur ** 2));
  const kernel = raster(ksize, ksize, 1);
  for (let j = 0; j < ksize; j++)
    for (let i = 0; i < ksize; i++) kernel.data[j * ksize + i] = (g[j]! * g[i]!) / sum ** 2;
  const smoothed = filter2d(disk, kernel, 'reflect101');
  // Weights below 1e-12 (e^-50 from a sigma of 0.1) change no output pixel; skipping them
  // makes the large kernels cheap.
  return map(smoothed, (v) => (Math.abs(v) < 1e-12 ? 0 : v));
}

export function defocusBlur(x: Raster, severity: number): Raster {
  const [radius, aliasBlur] = at(
    [
      [3, 0.1],
      [4, 0.5],
      [6, 0.5],
      [8, 0.5],
      [10, 0.5],
    ] as const,
    severity,
  );
  return map(
    filter2d(
      map(x, (v) => v / 255),
      diskKernel(radius, aliasBlur),
    ),
    (v) => clip01(v) * 255,
  );
}

/**
 * Motion blur as the reference computes it: copies of the image, shifted a whole pixel at a time
 * along the direction `angle` (degrees) with the edge pixels repeated, weighted by a half
 * Gaussian of the distance, for 2 * radius + 1 steps or until a shift leaves the image.
 */
export function motionBlurLayer(x: Raster, radius: number, sigma: number, angle: number): Raster {
  const { width, height, channels } = x;
  const steps = 2 * radius + 1;
  const kernel = Array.from({ length: steps }, (_, i) => Math.exp(-(i * i) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b, 0);
  const radians = (angle * Math.PI) / 180;
  const out = raster(width, height, channels);
  for (let i = 0; i < steps; i++) {
    const dy = -Math.ceil(i * Math.sin(radians) - 0.5);
    const dx = -Math.ceil(i * Math.cos(radians) - 0.5);
    if (Math.abs(dy) >= height || Math.abs(dx) >= width) break;
    const w = kernel[i]! / total;
    for (let y = 0; y < height; y++) {
      const sy = Math.min(height - 1, Math.max(0, y - dy));
      for (let xx = 0; xx < width; xx++) {
        const sx = Math.min(width - 1, Math.max(0, xx - dx));
        const from = (sy * width + sx) * channels;
        const to = (y * width + xx) * channels;
        for (let c = 0; c < channels; c++) out.data[to + c]! += w * x.data[from + c]!;
      }
    }
  }
  return out;
}

export function motionBlur(x: Raster, severity: number, rng: Random): Raster {
  const [radius, sigma] = at(
    [
      [10, 3],
      [15, 5],
      [15, 8],
      [15, 12],
      [20, 15],
    ] as const,
    severity,
  );
  const angle = rng.uniform(-45, 45);
  return map(motionBlurLayer(x, radius, sigma, angle), (v) => Math.min(255, Math.max(0, v)));
}

/** numpy.arange(1, end, step) as the reference lists its zoom factors */
const zooms = (end: number, step: number) =>
  Array.from({ length: Math.ceil((end - 1) / step) }, (_, i) => 1 + i * step);
const ZOOMS = [zooms(1.11, 0.01), zooms(1.16, 0.01), zooms(1.21, 0.02), zooms(1.26, 0.02), zooms(1.31, 0.03)];

export function zoomBlur(x: Raster, severity: number): Raster {
  const factors = ZOOMS[severity - 1]!;
  const image = map(x, (v) => Math.fround(v / 255));
  const sum = copyOf(image);
  const { width, height, channels } = image;
  for (const factor of factors) {
    const layer = clippedZoom(image, factor);
    const h = Math.min(height, layer.height);
    const w = Math.min(width, layer.width);
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < w; xx++)
        for (let c = 0; c < channels; c++)
          sum.data[(y * width + xx) * channels + c]! += layer.data[(y * layer.width + xx) * channels + c]!;
  }
  return map(sum, (v) => clip01(v / (factors.length + 1)) * 255);
}
