/**
 * The last step of preprocessing, apart from decoding (and from sharp): 8-bit pixels at the
 * model's size to its normalised float32 input. The engine imports it too, to normalise the
 * pixels it is handed exactly as preprocess() would have.
 */
import type { InputSpec } from '../model/manifest.js';

/** A decoded image at the model's size: 8-bit, interleaved, `stride` bytes a pixel. */
export interface ModelPixels {
  pixels: Uint8Array;
  stride: number;
}

/**
 * Interleaved 8-bit pixels to planar floats, (p * scale - mean) / std. Each operation is
 * rounded to float32 the way the PyTorch side computes it, so the same image gives the same
 * tensor here and in the reference. A pixel has only 256 values, so each channel's 256 results
 * are computed once and looked up: the same bits, at a fraction of the cost per pixel (this runs
 * for every image, on the engine's thread).
 */
export function normalise(pixels: Uint8Array, stride: number, spec: InputSpec): Float32Array {
  const plane = spec.width * spec.height;
  const out = new Float32Array(plane * spec.channels);
  const table = lookupTable(spec);
  if (spec.channels === 3 && stride >= 3) {
    // The common case in one pass over the pixels, in the order they lie in memory.
    for (let k = 0, at = 0; k < plane; k++, at += stride) {
      out[k] = table[pixels[at]!]!;
      out[plane + k] = table[256 + pixels[at + 1]!]!;
      out[2 * plane + k] = table[512 + pixels[at + 2]!]!;
    }
    return out;
  }
  for (let c = 0; c < spec.channels; c++) {
    const base = c * 256;
    const plane0 = c * plane;
    for (let k = 0, at = Math.min(c, stride - 1); k < plane; k++, at += stride)
      out[plane0 + k] = table[base + pixels[at]!]!;
  }
  return out;
}

function lookupTable(spec: InputSpec): Float32Array {
  const f = Math.fround;
  const table = new Float32Array(256 * spec.channels);
  for (let c = 0; c < spec.channels; c++) {
    const mean = f(spec.mean[c]!);
    const std = f(spec.std[c]!);
    for (let v = 0; v < 256; v++) table[c * 256 + v] = f(f(f(v * spec.scale) - mean) / std);
  }
  return table;
}
