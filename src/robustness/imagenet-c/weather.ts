/** Snow, frost and fog of ImageNet-C, on RGB pixels in 0..255; parameters are the reference's. */
import { motionBlurLayer } from './blur.js';
import type { Random } from './random.js';
import {
  clip01,
  clippedZoom,
  crop,
  luma,
  map,
  raster,
  resizeCubic,
  roundHalfEven,
  type Raster,
} from './raster.js';

const at = <T>(values: readonly T[], severity: number) => values[severity - 1]!;

const SNOW = [
  [0.1, 0.3, 3, 0.5, 10, 4, 0.8],
  [0.2, 0.3, 2, 0.5, 12, 4, 0.7],
  [0.55, 0.3, 4, 0.9, 12, 8, 0.7],
  [0.55, 0.3, 4.5, 0.85, 12, 8, 0.65],
  [0.55, 0.3, 2.5, 0.85, 12, 12, 0.55],
] as const;

/**
 * Flakes: a field of normal values, zoomed, thresholded and motion-blurred at an angle of
 * -135..-45 degrees, added to a whitened image twice (once turned by 180 degrees).
 */
export function snow(x: Raster, severity: number, rng: Random): Raster {
  const [loc, scale, zoom, threshold, radius, sigma, blend] = at(SNOW, severity);
  const { width, height } = x;
  const field = raster(width, height, 1);
  for (let k = 0; k < field.data.length; k++) field.data[k] = loc + scale * rng.normal();
  const zoomed = map(clippedZoom(field, zoom), (v) => (v < threshold ? 0 : clip01(v)));
  const blurred = motionBlurLayer(zoomed, radius, sigma, rng.uniform(-135, -45));
  const flakes = crop(
    map(blurred, (v) => Math.min(255, roundHalfEven(v * 255)) / 255),
    0,
    0,
    height,
    width,
  );
  const image = map(x, (v) => Math.fround(v / 255));
  const grey = luma(image);
  const out = raster(width, height, 3);
  const n = width * height;
  for (let p = 0; p < n; p++) {
    const whiter = grey.data[p]! * 1.5 + 0.5;
    const layer = flakes.data[p]! + flakes.data[n - 1 - p]!;
    for (let c = 0; c < 3; c++) {
      const v = image.data[3 * p + c]!;
      out.data[3 * p + c] = clip01(blend * v + (1 - blend) * Math.max(v, whiter) + layer) * 255;
    }
  }
  return out;
}

/** The frost photographs, RGB in 0..255, in the reference's order (frost1..frost6). */
export interface FrostAssets {
  pictures: readonly Raster[];
  /** pictures scaled for an image size, kept because scaling is the slow part */
  scaled?: Map<string, Raster>;
}

/**
 * A random crop of a frost photograph laid over the image. The reference draws among the first
 * five of its six photographs (numpy's randint(5)), so frost6 is never used; nor is it here.
 * A photograph is scaled by 1.1 (more when the image is larger than it, to cover it), bicubic.
 */
export function frost(x: Raster, severity: number, rng: Random, assets: FrostAssets): Raster {
  const [keep, add] = at(
    [
      [1, 0.4],
      [0.8, 0.6],
      [0.7, 0.7],
      [0.65, 0.7],
      [0.6, 0.75],
    ] as const,
    severity,
  );
  const index = rng.int(0, 5);
  const picture = assets.pictures[index]!;
  const { width, height } = x;
  let factor = 1;
  if (picture.height < height || picture.width < width)
    factor = Math.max(
      picture.height < height ? height / picture.height : 0,
      picture.width < width ? width / picture.width : 0,
    );
  factor *= 1.1;
  const sw = Math.ceil(picture.width * factor);
  const sh = Math.ceil(picture.height * factor);
  const key = `${index}:${sw}x${sh}`;
  assets.scaled ??= new Map();
  let scaled = assets.scaled.get(key);
  if (!scaled) {
    scaled = resizeCubic(picture, sw, sh);
    assets.scaled.set(key, scaled);
  }
  const top = rng.int(0, scaled.height - height);
  const left = rng.int(0, scaled.width - width);
  const layer = crop(scaled, top, left, height, width);
  return map(x, (v, k) => Math.min(255, Math.max(0, keep * v + add * layer.data[k]!)));
}

/**
 * The diamond-square fractal of the reference's fog: a square of side `size` (a power of two),
 * its corners averaged with a random wibble that shrinks by `decay` at every level, then
 * scaled to [0, 1]. Edges wrap around.
 */
export function plasmaFractal(size: number, decay: number, rng: Random): Float64Array {
  const map2 = new Float64Array(size * size);
  const at2 = (y: number, x: number) =>
    map2[(((y % size) + size) % size) * size + (((x % size) + size) % size)]!;
  let step = size;
  let wibble = 100;
  const wibbled = (sum: number) => Math.fround(sum / 4 + wibble * rng.uniform(-wibble, wibble));
  while (step >= 2) {
    const half = step / 2;
    // squares: the centre of every square of corners `step` apart
    for (let y = 0; y < size; y += step)
      for (let x = 0; x < size; x += step)
        map2[(y + half) * size + x + half] = wibbled(
          at2(y, x) + at2(y + step, x) + at2(y, x + step) + at2(y + step, x + step),
        );
    // diamonds: the middle of each top edge, then of each left edge, as the reference orders them
    for (let y = 0; y < size; y += step)
      for (let x = 0; x < size; x += step)
        map2[y * size + x + half] = wibbled(
          at2(y + half, x + half) + at2(y - half, x + half) + at2(y, x) + at2(y, x + step),
        );
    for (let y = 0; y < size; y += step)
      for (let x = 0; x < size; x += step)
        map2[(y + half) * size + x] = wibbled(
          at2(y + half, x + half) + at2(y + half, x - half) + at2(y, x) + at2(y + step, x),
        );
    step = half;
    wibble /= decay;
  }
  let min = Infinity;
  for (const v of map2) min = Math.min(min, v);
  let max = -Infinity;
  for (let k = 0; k < map2.length; k++) max = Math.max(max, (map2[k] = Math.fround(map2[k]! - min)));
  for (let k = 0; k < map2.length; k++) map2[k] = map2[k]! / max;
  return map2;
}

export function fog(x: Raster, severity: number, rng: Random): Raster {
  const [strength, decay] = at(
    [
      [1.5, 2],
      [2, 2],
      [2.5, 1.7],
      [2.5, 1.5],
      [3, 1.4],
    ] as const,
    severity,
  );
  const { width, height } = x;
  let size = 1;
  while (size < Math.max(width, height, 3)) size *= 2;
  const fractal = plasmaFractal(size, decay, rng);
  let peak = 0;
  for (const v of x.data) peak = Math.max(peak, v / 255);
  return map(x, (v, k) => {
    const p = Math.floor(k / 3);
    const f = fractal[Math.floor(p / width) * size + (p % width)]!;
    return clip01(((v / 255 + strength * f) * peak) / (peak + strength)) * 255;
  });
}
