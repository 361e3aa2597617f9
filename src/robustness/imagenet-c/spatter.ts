/**
 * Spatter: water drops (severities 1..3) or mud (4, 5), as the reference makes them. The water
 * drops' shading goes through OpenCV's Canny edges, distance transform and histogram
 * equalisation, each rebuilt here from its published algorithm on 8-bit images.
 */
import type { Random } from './random.js';
import { clip01, filter2d, gaussianFilter, map, raster, roundHalfEven, type Raster } from './raster.js';

const at = <T>(values: readonly T[], severity: number) => values[severity - 1]!;

const SPATTER = [
  [0.65, 0.3, 4, 0.69, 0.6, 0],
  [0.65, 0.3, 3, 0.68, 0.6, 0],
  [0.65, 0.3, 2, 0.68, 0.5, 0],
  [0.65, 0.3, 1, 0.65, 1.5, 1],
  [0.67, 0.4, 1, 0.65, 1.5, 1],
] as const;

/** 8-bit saturation with rounding (halves to even), as OpenCV's saturate_cast<uchar> */
const u8 = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : roundHalfEven(v));

/**
 * Canny edges (3 x 3 Sobel with repeated edges, |gx| + |gy|, non-maximum suppression in four
 * directions, hysteresis from `high` down to `low`); 1 marks an edge.
 */
export function cannyEdges(img: Raster, low: number, high: number): Uint8Array {
  const { width, height } = img;
  const px = (y: number, x: number) =>
    img.data[Math.min(height - 1, Math.max(0, y)) * width + Math.min(width - 1, Math.max(0, x))]!;
  const gx = new Float64Array(width * height);
  const gy = new Float64Array(width * height);
  const mag = new Float64Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const k = y * width + x;
      gx[k] =
        px(y - 1, x + 1) +
        2 * px(y, x + 1) +
        px(y + 1, x + 1) -
        px(y - 1, x - 1) -
        2 * px(y, x - 1) -
        px(y + 1, x - 1);
      gy[k] =
        px(y + 1, x - 1) +
        2 * px(y + 1, x) +
        px(y + 1, x + 1) -
        px(y - 1, x - 1) -
        2 * px(y - 1, x) -
        px(y - 1, x + 1);
      mag[k] = Math.abs(gx[k]!) + Math.abs(gy[k]!);
    }
  const m = (y: number, x: number) => (y < 0 || y >= height || x < 0 || x >= width ? 0 : mag[y * width + x]!);
  const tan22 = Math.tan(Math.PI / 8);
  const tan67 = Math.tan((3 * Math.PI) / 8);
  // 2: an edge; 1: may join one; 0: never
  const state = new Uint8Array(width * height);
  const stack: number[] = [];
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const k = y * width + x;
      const v = mag[k]!;
      if (v <= low) continue;
      const ax = Math.abs(gx[k]!);
      const ay = Math.abs(gy[k]!);
      let peak: boolean;
      if (ay < ax * tan22) peak = v > m(y, x - 1) && v >= m(y, x + 1);
      else if (ay > ax * tan67) peak = v > m(y - 1, x) && v >= m(y + 1, x);
      else {
        const s = gx[k]! * gy[k]! < 0 ? -1 : 1;
        peak = v > m(y - 1, x - s) && v > m(y + 1, x + s);
      }
      if (!peak) continue;
      if (v > high) {
        state[k] = 2;
        stack.push(k);
      } else state[k] = 1;
    }
  while (stack.length) {
    const k = stack.pop()!;
    const y = Math.floor(k / width);
    const x = k % width;
    for (let dy = -1; dy <= 1; dy++)
      for (let dx = -1; dx <= 1; dx++) {
        const yy = y + dy;
        const xx = x + dx;
        if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
        const n = yy * width + xx;
        if (state[n] === 1) {
          state[n] = 2;
          stack.push(n);
        }
      }
  }
  return state.map((s) => (s === 2 ? 1 : 0));
}

/**
 * Distance to the nearest marked pixel by OpenCV's 5 x 5 chamfer mask for the L2 metric
 * (1, 1.4 and 2.1969 for the straight, diagonal and knight's moves), two passes, in OpenCV's
 * 16-bit fixed point and returned as its float32 values: the truncations that follow see
 * 1.3999939, not 1.4.
 */
export function chamferDistance(marked: Uint8Array, width: number, height: number): Float64Array {
  const fixed = (v: number) => Math.round(v * 65536);
  const far = 2 ** 40;
  const d = Float64Array.from(marked, (v) => (v ? 0 : far));
  const [a, b, c] = [fixed(1), fixed(1.4), fixed(2.1969)];
  const moves: [number, number, number][] = [
    [-1, 0, a],
    [0, -1, a],
    [-1, -1, b],
    [1, -1, b],
    [-1, -2, c],
    [1, -2, c],
    [-2, -1, c],
    [2, -1, c],
  ];
  const relax = (y: number, x: number, sign: number) => {
    let best = d[y * width + x]!;
    for (const [mx, my, w] of moves) {
      const yy = y + sign * my;
      const xx = x + sign * mx;
      if (yy >= 0 && yy < height && xx >= 0 && xx < width) best = Math.min(best, d[yy * width + xx]! + w);
    }
    d[y * width + x] = best;
  };
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) relax(y, x, 1);
  for (let y = height - 1; y >= 0; y--) for (let x = width - 1; x >= 0; x--) relax(y, x, -1);
  const unit = Math.fround(1 / 65536);
  return d.map((v) => Math.fround(v * unit));
}

/**
 * OpenCV's 3 x 3 box blur (reflect-101 border): the sum times 1/9, then cast to the image's
 * type, float32 or 8 bits (rounded).
 */
function boxBlur3As(r: Raster, type: 'float32' | 'uint8'): Raster {
  const ones = raster(3, 3, 1, 1);
  return map(filter2d(r, ones), (sum) => (type === 'uint8' ? u8(sum * (1 / 9)) : Math.fround(sum * (1 / 9))));
}

/** OpenCV's equalizeHist on 8-bit values. */
export function equalizeHistogram(values: Float64Array): Float64Array {
  const hist = new Array<number>(256).fill(0);
  for (const v of values) hist[v]!++;
  let first = 0;
  while (hist[first] === 0) first++;
  if (hist[first] === values.length) return values.map(() => first);
  const scale = 255 / (values.length - hist[first]!);
  const lut = new Array<number>(256).fill(0);
  let sum = 0;
  for (let i = first + 1; i < 256; i++) {
    sum += hist[i]!;
    lut[i] = u8(sum * scale);
  }
  return values.map((v) => lut[v]!);
}

export function spatter(x: Raster, severity: number, rng: Random): Raster {
  const [loc, scale] = at(SPATTER, severity);
  const field = raster(x.width, x.height, 1);
  for (let k = 0; k < field.data.length; k++) field.data[k] = loc + scale * rng.normal();
  return spatterFromField(x, severity, field);
}

/** Spatter from a given field of N(loc, scale^2) values, one per pixel. */
export function spatterFromField(x: Raster, severity: number, field: Raster): Raster {
  const [, , sigma, threshold, strength, mud] = at(SPATTER, severity);
  const { width, height } = x;
  const liquid = map(gaussianFilter(field, sigma), (v) => (v < threshold ? 0 : v));
  const image = map(x, (v) => Math.fround(v / 255));
  if (!mud) {
    const bytes = map(liquid, (v) => Math.trunc(v * 255) & 255);
    const edges = cannyEdges(bytes, 50, 150);
    const distance = chamferDistance(edges, width, height);
    const truncated = raster(width, height, 1);
    for (let k = 0; k < distance.length; k++) truncated.data[k] = Math.min(distance[k]!, 20);
    const blurred = map(boxBlur3As(truncated, 'float32'), (v) => Math.trunc(v));
    const equalised = { ...blurred, data: equalizeHistogram(blurred.data) };
    const emboss = raster(3, 3, 1);
    emboss.data.set([-2, -1, 0, -1, 1, 1, 0, 1, 2]);
    const shaded = map(filter2d(equalised, emboss), u8);
    const shade = boxBlur3As(shaded, 'uint8');
    const m = map(liquid, (v, k) => v * shade.data[k]!);
    let peak = 0;
    for (const v of m.data) peak = Math.max(peak, v);
    // water is pale turquoise; the reference's colour lands on the RGB channels in this order
    const colour = [175 / 255, 238 / 255, 238 / 255];
    return map(image, (v, k) => {
      const weight = peak > 0 ? (m.data[Math.floor(k / 3)]! / peak) * strength : 0;
      return clip01(v + weight * colour[k % 3]!) * 255;
    });
  }
  const mask = map(liquid, (v) => (v > threshold ? 1 : 0));
  const m = map(gaussianFilter(mask, strength), (v) => (v < 0.8 ? 0 : v));
  // mud brown
  const colour = [63 / 255, 42 / 255, 20 / 255];
  return map(image, (v, k) => {
    const weight = m.data[Math.floor(k / 3)]!;
    return clip01(v * (1 - weight) + weight * colour[k % 3]!) * 255;
  });
}
