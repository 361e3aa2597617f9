/**
 * The image codec work that is not a request's preprocessing, kept beside it so that sharp is
 * imported in src/image/ alone: rendering a chart, JPEG round trips and reading photographs for
 * the corruptions, reading and writing whole files for `npm run corrupt`.
 */
import sharp from 'sharp';

/** 8-bit, interleaved (H x W x channels). */
export interface Bitmap {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** An SVG document as a PNG. */
export function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** RGB pixels through a baseline JPEG of this quality (4:2:0 chroma, standard tables) and back. */
export async function jpegRoundTrip(
  rgb: Uint8Array,
  width: number,
  height: number,
  quality: number,
): Promise<Uint8Array> {
  const encoded = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: '4:2:0', optimiseCoding: false })
    .toBuffer();
  return new Uint8Array(await sharp(encoded).raw().toBuffer());
}

/** An image file as sRGB pixels without alpha. */
export async function readRgbFile(file: string): Promise<Bitmap> {
  const { data, info } = await sharp(file)
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) };
}

/**
 * An encoded image at its own size, oriented and flattened on black (its first frame or page),
 * and whether it was grey; a truncated file is refused.
 */
export async function decodeWhole(bytes: Buffer): Promise<{ image: Bitmap; grey: boolean }> {
  const decoder = sharp(bytes, { pages: 1, failOn: 'truncated' });
  const grey = ((await decoder.metadata()).channels ?? 3) <= 2;
  const { data, info } = await decoder
    .rotate()
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    image: { width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data) },
    grey,
  };
}

/** RGB pixels as a PNG, grey (one channel) when asked. */
export function encodePng(rgb: Uint8Array, width: number, height: number, grey: boolean): Promise<Buffer> {
  if (grey)
    return sharp(
      rgb.filter((_, k) => k % 3 === 0),
      { raw: { width, height, channels: 1 } },
    )
      .toColourspace('b-w')
      .png()
      .toBuffer();
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** Interleaved 8-bit pixels (grey or RGB) as a PNG, e.g. an image a client uploads. */
export function pixelsToPng(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3,
): Promise<Buffer> {
  const image = sharp(pixels, { raw: { width, height, channels } });
  return (channels === 1 ? image.toColourspace('b-w') : image).png().toBuffer();
}
