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
 * tensor here and in the reference.
 */
export function normalise(pixels: Uint8Array, stride: number, spec: InputSpec): Float32Array {
  const plane = spec.width * spec.height;
  const out = new Float32Array(plane * spec.channels);
  const f = Math.fround;
  for (let c = 0; c < spec.channels; c++) {
    const mean = f(spec.mean[c]!);
    const std = f(spec.std[c]!);
    const src = Math.min(c, stride - 1);
    for (let k = 0; k < plane; k++) {
      out[c * plane + k] = f(f(f(pixels[k * stride + src]! * spec.scale) - mean) / std);
    }
  }
  return out;
}
