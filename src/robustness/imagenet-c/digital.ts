/**
 * Brightness, contrast, saturation, pixelation, JPEG and the elastic transform of ImageNet-C,
 * on RGB pixels in 0..255; parameters are the reference's.
 */
import { jpegRoundTrip } from '../../image/codecs.js';
import type { Random } from './random.js';
import {
  borderIndex,
  clip01,
  gaussianFilter,
  hsvToRgb,
  map,
  raster,
  rgbToHsv,
  type Raster,
} from './raster.js';

const at = <T>(values: readonly T[], severity: number) => values[severity - 1]!;

/** V + c in HSV */
export function brightness(x: Raster, severity: number): Raster {
  const c = at([0.1, 0.2, 0.3, 0.4, 0.5], severity);
  const hsv = rgbToHsv(map(x, (v) => v / 255));
  for (let k = 2; k < hsv.data.length; k += 3) hsv.data[k] = clip01(hsv.data[k]! + c);
  return map(hsvToRgb(hsv), (v) => clip01(v) * 255);
}

/** S * a + b in HSV */
export function saturate(x: Raster, severity: number): Raster {
  const [a, b] = at(
    [
      [0.3, 0],
      [0.1, 0],
      [2, 0],
      [5, 0.1],
      [20, 0.2],
    ] as const,
    severity,
  );
  const hsv = rgbToHsv(map(x, (v) => v / 255));
  for (let k = 1; k < hsv.data.length; k += 3) hsv.data[k] = clip01(hsv.data[k]! * a + b);
  return map(hsvToRgb(hsv), (v) => clip01(v) * 255);
}

/** towards each channel's mean over the image */
export function contrast(x: Raster, severity: number): Raster {
  const c = at([0.4, 0.3, 0.2, 0.1, 0.05], severity);
  const means = [0, 0, 0];
  for (let k = 0; k < x.data.length; k++) means[k % 3]! += x.data[k]! / 255;
  const n = x.width * x.height;
  return map(x, (v, k) => {
    const mean = means[k % 3]! / n;
    return clip01((v / 255 - mean) * c + mean) * 255;
  });
}

// Pillow's resampling arithmetic for 8-bit images: 22-bit fixed-point weights, rounded sums.
const PRECISION_BITS = 22;

/**
 * Pillow's BOX reduction along one axis: each output pixel averages the input pixels whose
 * centres fall in its span, the sum rounded to 8 bits.
 */
function boxReduce(r: Raster, outSize: number, axis: 'x' | 'y'): Raster {
  const inSize = axis === 'x' ? r.width : r.height;
  const scale = inSize / outSize;
  const support = 0.5 * Math.max(scale, 1);
  const plans = Array.from({ length: outSize }, (_, o) => {
    const centre = (o + 0.5) * scale;
    const min = Math.max(0, Math.trunc(centre - support + 0.5));
    const max = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const weights: number[] = [];
    for (let i = min; i < max; i++) {
      const t = (i - centre + 0.5) / Math.max(scale, 1);
      weights.push(t > -0.5 && t <= 0.5 ? 1 : 0);
    }
    const total = weights.reduce((a, b) => a + b, 0);
    const fixed = weights.map((w) => {
      const k = total ? w / total : 0;
      return Math.trunc(k < 0 ? -0.5 + k * 2 ** PRECISION_BITS : 0.5 + k * 2 ** PRECISION_BITS);
    });
    return { min, fixed };
  });
  const width = axis === 'x' ? outSize : r.width;
  const height = axis === 'y' ? outSize : r.height;
  const out = raster(width, height, r.channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const { min, fixed } = plans[axis === 'x' ? x : y]!;
      for (let c = 0; c < r.channels; c++) {
        let sum = 2 ** (PRECISION_BITS - 1);
        for (let i = 0; i < fixed.length; i++) {
          const src =
            axis === 'x' ? (y * r.width + min + i) * r.channels : ((min + i) * r.width + x) * r.channels;
          sum += r.data[src + c]! * fixed[i]!;
        }
        out.data[(y * width + x) * r.channels + c] = Math.min(
          255,
          Math.max(0, Math.floor(sum / 2 ** PRECISION_BITS)),
        );
      }
    }
  return out;
}

/** Down by a factor with Pillow's BOX filter, back up with its nearest neighbour. */
export function pixelate(x: Raster, severity: number): Raster {
  const c = at([0.6, 0.5, 0.4, 0.3, 0.25], severity);
  const w = Math.max(1, Math.trunc(x.width * c));
  const h = Math.max(1, Math.trunc(x.height * c));
  const small = boxReduce(boxReduce(x, w, 'x'), h, 'y');
  // Pillow's nearest neighbour steps its source coordinate by repeated addition, and where
  // (i + 0.5) * scale is a whole number that sum can fall just short of it: so do the same.
  const sources = (n: number, m: number) => {
    const out = new Int32Array(n);
    let at = (m / n) * 0.5;
    for (let i = 0; i < n; i++, at += m / n) out[i] = Math.trunc(at);
    return out;
  };
  const ys = sources(x.height, h);
  const xs = sources(x.width, w);
  const out = raster(x.width, x.height, 3);
  for (let y = 0; y < x.height; y++)
    for (let xx = 0; xx < x.width; xx++)
      for (let ch = 0; ch < 3; ch++)
        out.data[(y * x.width + xx) * 3 + ch] = small.data[(ys[y]! * w + xs[xx]!) * 3 + ch]!;
  return out;
}

/** Encoded as a baseline JPEG of this quality (4:2:0 chroma, standard tables) and decoded. */
export async function jpegCompression(x: Raster, severity: number): Promise<Raster> {
  const quality = at([25, 18, 15, 10, 7], severity);
  const decoded = await jpegRoundTrip(Uint8Array.from(x.data), x.width, x.height, quality);
  return { width: x.width, height: x.height, channels: 3, data: Float64Array.from(decoded) };
}

/**
 * Every pixel displaced by smooth random fields (uniform noise blurred by a Gaussian of 1% of
 * the image's side, truncated at 3 sigma, reflected at the border) and resampled bilinearly.
 */
export function elasticTransform(x: Raster, severity: number, rng: Random): Raster {
  const alpha = at([250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12], severity);
  const { width, height } = x;
  const sigma = [height * 0.01, width * 0.01] as const;
  const maxShift = height * 0.005;
  const field = () => {
    const noise = raster(width, height, 1);
    for (let k = 0; k < noise.data.length; k++) noise.data[k] = rng.uniform(-maxShift, maxShift);
    return map(gaussianFilter(noise, sigma, 'reflect', 3), (v) => Math.fround(v * alpha));
  };
  const dx = field();
  const dy = field();
  const image = map(x, (v) => Math.fround(v / 255));
  const out = raster(width, height, 3);
  for (let y = 0; y < height; y++)
    for (let xx = 0; xx < width; xx++) {
      const k = y * width + xx;
      const fy = y + dy.data[k]!;
      const fx = xx + dx.data[k]!;
      const y0 = Math.floor(fy);
      const x0 = Math.floor(fx);
      const wy = fy - y0;
      const wx = fx - x0;
      const ys = [borderIndex(y0, height, 'reflect'), borderIndex(y0 + 1, height, 'reflect')];
      const xs = [borderIndex(x0, width, 'reflect'), borderIndex(x0 + 1, width, 'reflect')];
      for (let c = 0; c < 3; c++) {
        const p = (j: number, i: number) => image.data[(ys[j]! * width + xs[i]!) * 3 + c]!;
        const v = (p(0, 0) * (1 - wx) + p(0, 1) * wx) * (1 - wy) + (p(1, 0) * (1 - wx) + p(1, 1) * wx) * wy;
        out.data[k * 3 + c] = clip01(v) * 255;
      }
    }
  return out;
}
