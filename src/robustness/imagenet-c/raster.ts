/**
 * Images as the ImageNet-C corruptions handle them: rows of interleaved channels (H x W x C),
 * in doubles, and the filters they are built from. Border rules are named after the libraries
 * the reference corruptions call, because the corruptions are only equal to the reference when
 * each filter treats the border as the reference's does.
 */

export interface Raster {
  width: number;
  height: number;
  channels: number;
  data: Float64Array;
}

export function raster(width: number, height: number, channels: number, fill = 0): Raster {
  const data = new Float64Array(width * height * channels);
  if (fill !== 0) data.fill(fill);
  return { width, height, channels, data };
}

export const copyOf = (r: Raster): Raster => ({ ...r, data: Float64Array.from(r.data) });

export function map(r: Raster, f: (v: number, k: number) => number): Raster {
  const out = new Float64Array(r.data.length);
  for (let k = 0; k < out.length; k++) out[k] = f(r.data[k]!, k);
  return { ...r, data: out };
}

export const clip01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/**
 * How an index past the border is brought back inside:
 * - nearest: the edge pixel repeats (scipy 'nearest', OpenCV BORDER_REPLICATE);
 * - reflect: mirrored about the edge, the edge pixel included (scipy 'reflect': d c b a | a b c d);
 * - reflect101: mirrored about the edge pixel (scipy 'mirror', OpenCV's default BORDER_REFLECT_101).
 */
export type Border = 'nearest' | 'reflect' | 'reflect101';

export function borderIndex(i: number, n: number, border: Border): number {
  if (i >= 0 && i < n) return i;
  if (n === 1) return 0;
  if (border === 'nearest') return i < 0 ? 0 : n - 1;
  if (border === 'reflect') {
    const period = 2 * n;
    let k = ((i % period) + period) % period;
    if (k >= n) k = period - 1 - k;
    return k;
  }
  const period = 2 * n - 2;
  let k = ((i % period) + period) % period;
  if (k >= n) k = period - k;
  return k;
}

/** scipy.ndimage's Gaussian weights: radius int(truncate * sigma + 0.5), normalised. */
export function gaussianWeights(sigma: number, truncate = 4): Float64Array {
  const radius = Math.trunc(truncate * sigma + 0.5);
  const w = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let k = -radius; k <= radius; k++) sum += w[k + radius] = Math.exp((-0.5 * k * k) / (sigma * sigma));
  for (let k = 0; k < w.length; k++) w[k]! /= sum;
  return w;
}

/** Correlates every channel along one axis with `weights` centred on each pixel. */
export function correlate1d(r: Raster, weights: ArrayLike<number>, axis: 'x' | 'y', border: Border): Raster {
  const { width, height, channels, data } = r;
  const out = new Float64Array(data.length);
  const taps = weights.length;
  const radius = (taps - 1) >> 1;
  const n = axis === 'x' ? width : height;
  // Where the line's samples come from, border rule applied, for every position and tap.
  const index = new Int32Array(n + 2 * radius);
  for (let k = 0; k < index.length; k++) index[k] = borderIndex(k - radius, n, border);
  // Along x a step is one pixel, along y one row.
  const step = (axis === 'x' ? 1 : width) * channels;
  const lines = axis === 'x' ? height : width;
  const lineStart = (line: number) => (axis === 'x' ? line * width : line) * channels;
  const w = Float64Array.from(weights);
  for (let line = 0; line < lines; line++) {
    const base = lineStart(line);
    for (let p = 0; p < n; p++) {
      const to = base + p * step;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < taps; k++) acc += w[k]! * data[base + index[p + k]! * step + c]!;
        out[to + c] = acc;
      }
    }
  }
  return { ...r, data: out };
}

/**
 * scipy.ndimage.gaussian_filter over the two spatial axes (skimage.filters.gaussian with the
 * channel axis left alone); sigma per axis as [y, x] or one for both.
 */
export function gaussianFilter(
  r: Raster,
  sigma: number | readonly [number, number],
  border: Border = 'nearest',
  truncate = 4,
): Raster {
  const [sy, sx] = typeof sigma === 'number' ? [sigma, sigma] : sigma;
  const alongX = sx > 0 ? correlate1d(r, gaussianWeights(sx, truncate), 'x', border) : r;
  return sy > 0 ? correlate1d(alongX, gaussianWeights(sy, truncate), 'y', border) : alongX;
}

/** A 2-D kernel correlated with every channel (OpenCV filter2D, anchor at the centre). */
export function filter2d(r: Raster, kernel: Raster, border: Border = 'reflect101'): Raster {
  const { width, height, channels, data } = r;
  const kw = kernel.width;
  const kh = kernel.height;
  const ax = kw >> 1;
  const ay = kh >> 1;
  const out = new Float64Array(data.length);
  // Only the taps that weigh anything: a disk kernel is mostly zeros.
  const taps: { dx: number; dy: number; w: number }[] = [];
  for (let j = 0; j < kh; j++)
    for (let i = 0; i < kw; i++) {
      const w = kernel.data[j * kw + i]!;
      if (w !== 0) taps.push({ dx: i - ax, dy: j - ay, w });
    }
  const weights = Float64Array.from(taps, (t) => t.w);
  const offsets = Int32Array.from(taps, (t) => (t.dy * width + t.dx) * channels);
  const xs = new Int32Array(width + kw);
  for (let k = 0; k < xs.length; k++) xs[k] = borderIndex(k - ax, width, border);
  const ys = new Int32Array(height + kh);
  for (let k = 0; k < ys.length; k++) ys[k] = borderIndex(k - ay, height, border);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * channels;
      const inside = y >= ay && y < height - (kh - 1 - ay) && x >= ax && x < width - (kw - 1 - ax);
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        if (inside) for (let t = 0; t < weights.length; t++) acc += weights[t]! * data[at + offsets[t]! + c]!;
        else
          for (let t = 0; t < taps.length; t++) {
            const { dx, dy } = taps[t]!;
            acc += weights[t]! * data[(ys[y + dy + ay]! * width + xs[x + dx + ax]!) * channels + c]!;
          }
        out[at + c] = acc;
      }
    }
  return { ...r, data: out };
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * scipy.ndimage.zoom with order 1 (bilinear) over the spatial axes: the output is round(n * z)
 * pixels a side, and output pixel i samples the input at i * (n - 1) / (out - 1), the corners
 * aligned.
 */
export function zoomBilinear(r: Raster, zoom: number): Raster {
  const { width, height, channels } = r;
  const ow = roundHalfEven(width * zoom);
  const oh = roundHalfEven(height * zoom);
  const out = new Float64Array(ow * oh * channels);
  const sx = ow > 1 ? (width - 1) / (ow - 1) : 0;
  const sy = oh > 1 ? (height - 1) / (oh - 1) : 0;
  for (let y = 0; y < oh; y++) {
    const fy = y * sy;
    const y0 = Math.min(Math.floor(fy), height - 1);
    const y1 = Math.min(y0 + 1, height - 1);
    const wy = fy - y0;
    for (let x = 0; x < ow; x++) {
      const fx = x * sx;
      const x0 = Math.min(Math.floor(fx), width - 1);
      const x1 = Math.min(x0 + 1, width - 1);
      const wx = fx - x0;
      for (let c = 0; c < channels; c++) {
        const at = (yy: number, xx: number) => r.data[(yy * width + xx) * channels + c]!;
        const top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx;
        const bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx;
        out[(y * ow + x) * channels + c] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return { width: ow, height: oh, channels, data: out };
}

/**
 * The reference's clipped zoom: the centre ceil(n / z) pixels a side, zoomed by z (so the result
 * can be a pixel larger than the image; callers crop it).
 */
export function clippedZoom(r: Raster, zoom: number): Raster {
  const ch = Math.ceil(r.height / zoom);
  const cw = Math.ceil(r.width / zoom);
  return zoomBilinear(crop(r, (r.height - ch) >> 1, (r.width - cw) >> 1, ch, cw), zoom);
}

export function crop(r: Raster, top: number, left: number, height: number, width: number): Raster {
  const { channels } = r;
  const h = Math.min(height, r.height - top);
  const w = Math.min(width, r.width - left);
  const out = new Float64Array(h * w * channels);
  for (let y = 0; y < h; y++) {
    const from = ((top + y) * r.width + left) * channels;
    out.set(r.data.subarray(from, from + w * channels), y * w * channels);
  }
  return { width: w, height: h, channels, data: out };
}

/** OpenCV's bicubic resize (INTER_CUBIC: a = -0.75, pixel centres aligned, edges repeated). */
export function resizeCubic(r: Raster, width: number, height: number): Raster {
  const { channels } = r;
  const out = new Float64Array(width * height * channels);
  const taps = (f: number) => {
    const a = -0.75;
    const w0 = ((a * (f + 1) - 5 * a) * (f + 1) + 8 * a) * (f + 1) - 4 * a;
    const w1 = ((a + 2) * f - (a + 3)) * f * f + 1;
    const w2 = ((a + 2) * (1 - f) - (a + 3)) * (1 - f) * (1 - f) + 1;
    return [w0, w1, w2, 1 - w0 - w1 - w2] as const;
  };
  const plan = (outN: number, inN: number) =>
    Array.from({ length: outN }, (_, i) => {
      const src = (i + 0.5) * (inN / outN) - 0.5;
      const base = Math.floor(src);
      const w = taps(src - base);
      return { idx: [-1, 0, 1, 2].map((d) => borderIndex(base + d, inN, 'nearest')), w };
    });
  const px = plan(width, r.width);
  const py = plan(height, r.height);
  for (let y = 0; y < height; y++) {
    const { idx: ys, w: wy } = py[y]!;
    for (let x = 0; x < width; x++) {
      const { idx: xs, w: wx } = px[x]!;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let j = 0; j < 4; j++) {
          let row = 0;
          for (let i = 0; i < 4; i++) row += wx[i]! * r.data[(ys[j]! * r.width + xs[i]!) * channels + c]!;
          acc += wy[j]! * row;
        }
        out[(y * width + x) * channels + c] = acc;
      }
    }
  }
  return { width, height, channels, data: out };
}

/** Luma with the weights OpenCV's RGB2GRAY uses. */
export function luma(r: Raster): Raster {
  const out = raster(r.width, r.height, 1);
  for (let k = 0; k < out.data.length; k++)
    out.data[k] = 0.299 * r.data[3 * k]! + 0.587 * r.data[3 * k + 1]! + 0.114 * r.data[3 * k + 2]!;
  return out;
}

/** RGB in [0, 1] to HSV in [0, 1] and back, as scikit-image computes them. */
export function rgbToHsv(r: Raster): Raster {
  const out = raster(r.width, r.height, 3);
  for (let k = 0; k < r.width * r.height; k++) {
    const R = r.data[3 * k]!;
    const G = r.data[3 * k + 1]!;
    const B = r.data[3 * k + 2]!;
    const v = Math.max(R, G, B);
    const delta = v - Math.min(R, G, B);
    const s = delta === 0 ? 0 : delta / v;
    let h = 0;
    if (delta !== 0) {
      if (v === R) h = (G - B) / delta;
      else if (v === G) h = 2 + (B - R) / delta;
      else h = 4 + (R - G) / delta;
      h = (((h / 6) % 1) + 1) % 1;
    }
    out.data[3 * k] = h;
    out.data[3 * k + 1] = s;
    out.data[3 * k + 2] = v;
  }
  return out;
}

export function hsvToRgb(r: Raster): Raster {
  const out = raster(r.width, r.height, 3);
  for (let k = 0; k < r.width * r.height; k++) {
    const h = r.data[3 * k]!;
    const s = r.data[3 * k + 1]!;
    const v = r.data[3 * k + 2]!;
    const hi = Math.floor(h * 6) % 6;
    const f = h * 6 - Math.floor(h * 6);
    const p = v * (1 - s);
    const q = v * (1 - f * s);
    const t = v * (1 - (1 - f) * s);
    const rgb = [
      [v, t, p],
      [q, v, p],
      [p, v, t],
      [p, q, v],
      [t, p, v],
      [v, p, q],
    ][hi]!;
    out.data.set(rgb, 3 * k);
  }
  return out;
}
