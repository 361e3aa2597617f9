/**
 * normalise(), 8-bit pixels to the model's float32 input, looks its values up in a table of each
 * channel's 256 results. Pinned here: bit for bit the formula it replaces, (p * scale - mean) /
 * std with every operation rounded to float32 as PyTorch computes it (the Python side's tests
 * hold that formula to torch), for every pixel value, one and three channels, and pixels one to
 * four bytes apart (grey into an RGB model, RGB, RGBA).
 */
import { describe, expect, it } from 'vitest';
import { normalise } from '../../src/image/normalise.js';
import type { InputSpec } from '../../src/model/manifest.js';

function byFormula(pixels: Uint8Array, stride: number, spec: InputSpec): Float32Array {
  const f = Math.fround;
  const plane = spec.width * spec.height;
  const out = new Float32Array(plane * spec.channels);
  for (let c = 0; c < spec.channels; c++)
    for (let k = 0; k < plane; k++) {
      const p = pixels[k * stride + Math.min(c, stride - 1)]!;
      out[c * plane + k] = f(f(f(p * spec.scale) - f(spec.mean[c]!)) / f(spec.std[c]!));
    }
  return out;
}

const spec = (channels: number, mean: number[], std: number[], scale: number): InputSpec =>
  ({ width: 32, height: 24, channels, mean, std, scale }) as InputSpec;

describe('normalise', () => {
  it.each([
    ['ImageNet RGB', spec(3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1 / 255)],
    ['Fashion-MNIST grey', spec(1, [0.286], [0.353], 1 / 255)],
    ['odd constants', spec(3, [0.1, -0.7, 3e-3], [0.9, 0.013, 3.7], 0.5)],
  ])('%s: the same bits as the formula, every pixel value, strides 1 to 4', (_, s) => {
    for (let stride = 1; stride <= 4; stride++) {
      const pixels = new Uint8Array(s.width * s.height * stride);
      // every value 0..255 in every byte position of a pixel
      for (let k = 0; k < pixels.length; k++) pixels[k] = (Math.floor(k / stride) + 37 * (k % stride)) & 255;
      const got = normalise(pixels, stride, s);
      const want = byFormula(pixels, stride, s);
      expect(got.length).toBe(want.length);
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    }
  });
});
