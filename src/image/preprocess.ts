/**
 * The one place that touches sharp: decode, orient, resize and normalise an image as the
 * model's manifest says.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { errors } from '../errors.js';
import type { InputSpec } from '../model/manifest.js';
import { plainPngPixels } from './plain-png.js';

/** Media types the service decodes; anything else is refused before decoding. */
export const IMAGE_MEDIA_TYPES = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'image/tiff',
] as const;

const SERVED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff']);

/** Refuse decompression bombs: images whose header claims more pixels than this. */
export const MAX_INPUT_PIXELS = 40_000_000;

export interface Preprocessed {
  tensor: Float32Array;
  source: { format: string; width: number; height: number };
}

/** Decodes `bytes` and returns the model input, channel-major (C, H, W), normalised. */
export async function preprocess(bytes: Buffer, spec: InputSpec): Promise<Preprocessed> {
  const plain = plainPngPixels(bytes, spec.width, spec.height, spec.channels);
  if (plain)
    return {
      tensor: normalise(plain, spec.channels, spec),
      source: { format: 'png', width: spec.width, height: spec.height },
    };
  return preprocessWithSharp(bytes, spec);
}

/** preprocess() for every image, even those plainPngPixels reads itself (for tests). */
export async function preprocessWithSharp(bytes: Buffer, spec: InputSpec): Promise<Preprocessed> {
  // Only the first frame of animated or multi-page images is read.
  // failOn 'truncated': a cut-off image is refused rather than decoded with a grey remainder.
  const image = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, pages: 1, failOn: 'truncated' });
  let meta: Metadata;
  try {
    meta = await image.metadata();
  } catch (err) {
    throw errors.imageUndecodable(describe(err));
  }
  if (!meta.format || !SERVED_FORMATS.has(meta.format)) {
    throw errors.imageUndecodable(
      `format '${meta.format ?? 'unknown'}' is not one of ${[...SERVED_FORMATS].join(', ')}`,
    );
  }
  const background = {
    r: spec.background[0]!,
    g: spec.background[1] ?? spec.background[0]!,
    b: spec.background[2] ?? spec.background[0]!,
  };
  let pipeline = image
    .rotate() // EXIF orientation
    .flatten({ background })
    .resize(spec.width, spec.height, { fit: spec.resize, background, position: 'centre' });
  pipeline = spec.channels === 1 ? pipeline.greyscale() : pipeline.toColourspace('srgb');

  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw errors.imageUndecodable(describe(err));
  }
  return {
    tensor: normalise(raw.data, raw.info.channels, spec),
    source: { format: meta.format, width: meta.width ?? 0, height: meta.height ?? 0 },
  };
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

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // sharp's messages can carry the input's internals; keep the first line only.
  return message.split('\n')[0]!.replace(/^Input buffer /, '');
}
