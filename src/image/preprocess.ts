/**
 * A request's preprocessing: decode, orient, resize and normalise an image as the model's
 * manifest says. With codecs.ts, the only code that touches sharp.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { errors } from '../errors.js';
import type { InputSpec } from '../model/manifest.js';
import { plainPngPixels } from './plain-png.js';
import { normalise, type ModelPixels } from './normalise.js';

export { normalise, type ModelPixels };

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
  const { input, source } = await decodeForModel(bytes, spec);
  return { tensor: normalise(input.pixels, input.stride, spec), source };
}

/**
 * Decodes `bytes` to the model's size and colours and stops there: the 8-bit pixels that
 * preprocess() normalises, which is how an image is handed to the engine (a quarter of the
 * bytes of float32); the engine normalises them with the same function, to the same bits.
 */
export async function decodeForModel(
  bytes: Buffer,
  spec: InputSpec,
): Promise<{ input: ModelPixels; source: Preprocessed['source'] }> {
  const plain = plainPngPixels(bytes, spec.width, spec.height, spec.channels);
  if (plain)
    return {
      input: { pixels: plain, stride: spec.channels },
      source: { format: 'png', width: spec.width, height: spec.height },
    };
  const { pixels, source } = await decodeAtModelSize(bytes, spec, 'model');
  return { input: { pixels: pixels.data, stride: pixels.channels }, source };
}

/** preprocess() for every image, even those plainPngPixels reads itself (for tests). */
export async function preprocessWithSharp(bytes: Buffer, spec: InputSpec): Promise<Preprocessed> {
  const { pixels, source } = await decodeAtModelSize(bytes, spec, 'model');
  return { tensor: normalise(pixels.data, pixels.channels, spec), source };
}

/** 8-bit pixels, interleaved (H x W x channels). */
export interface RawPixels {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/**
 * Decodes, orients, flattens and resizes an image as the model's manifest says; its colours are
 * then either the model's (`model`: grey or sRGB, what preprocess() normalises) or sRGB whatever
 * the model takes (`rgb`: for the studies, which corrupt an image at the size the model sees it
 * and then finish it with modelPixelsFromRgb()).
 */
export async function decodeAtModelSize(
  bytes: Buffer,
  spec: InputSpec,
  colours: 'model' | 'rgb',
): Promise<{ pixels: RawPixels; source: Preprocessed['source'] }> {
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
  pipeline =
    colours === 'model' && spec.channels === 1 ? pipeline.greyscale() : pipeline.toColourspace('srgb');

  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw errors.imageUndecodable(describe(err));
  }
  return {
    pixels: {
      width: raw.info.width,
      height: raw.info.height,
      channels: raw.info.channels,
      data: new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.length),
    },
    source: { format: meta.format, width: meta.width ?? 0, height: meta.height ?? 0 },
  };
}

/**
 * The model inputs for sRGB images already at the model's size: the colour step of
 * preprocess() (sharp's greyscale, for a grey model) and its normalisation. The images go
 * through sharp together, stacked into one tall image (the colour step is per pixel), because
 * a call per small image would cost more than the conversion.
 */
export async function modelInputsFromRgb(
  images: readonly RawPixels[],
  spec: InputSpec,
): Promise<Float32Array[]> {
  for (const p of images)
    if (p.width !== spec.width || p.height !== spec.height || p.channels !== images[0]!.channels)
      throw new RangeError(
        `pixels are ${p.width}x${p.height}x${p.channels}, the model takes ${spec.width}x${spec.height}`,
      );
  if (images.length === 0) return [];
  const channels = images[0]!.channels;
  if (spec.channels !== 1 || channels === 1) return images.map((p) => normalise(p.data, channels, spec));
  // An image whose channels are all equal is grey, and taken as such, as a grey PNG of it would
  // be; the others get sharp's greyscale, all in one call.
  const out: Float32Array[] = images.map((p) =>
    isGrey(p) ? normalise(p.data, channels, spec) : new Float32Array(0),
  );
  const colour = images.flatMap((p, k) => (out[k]!.length ? [] : [k]));
  if (colour.length === 0) return out;
  const plane = spec.width * spec.height;
  const stacked = new Uint8Array(plane * channels * colour.length);
  colour.forEach((k, j) => stacked.set(images[k]!.data, j * plane * channels));
  const raw = { width: spec.width, height: spec.height * colour.length, channels: channels as 1 | 3 | 4 };
  const grey = await sharp(stacked, { raw }).greyscale().raw().toBuffer();
  const stride = grey.length / (plane * colour.length);
  colour.forEach((k, j) => {
    out[k] = normalise(grey.subarray(j * plane * stride, (j + 1) * plane * stride), stride, spec);
  });
  return out;
}

function isGrey(p: RawPixels): boolean {
  if (p.channels < 3) return true;
  for (let k = 0; k < p.data.length; k += p.channels)
    if (p.data[k] !== p.data[k + 1] || p.data[k] !== p.data[k + 2]) return false;
  return true;
}

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // sharp's messages can carry the input's internals; keep the first line only.
  return message.split('\n')[0]!.replace(/^Input buffer /, '');
}
