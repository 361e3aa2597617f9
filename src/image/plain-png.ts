/**
 * The pixels of a PNG that needs nothing but decompression: 8-bit, not interlaced, already the
 * model's size, greyscale for a one-channel model or RGB for a three-channel one, and no chunk
 * that could change a pixel (transparency, palette, colour profile, gamma, orientation). For
 * such an image sharp's pipeline (orient, flatten, resize, colour conversion) changes nothing,
 * and for the small images these models take its per-image cost is most of the server's own
 * work: at 28 × 28 about 0.8 ms of CPU, a twentieth of the engine's for one request at T = 8.
 * Anything else, or anything malformed, returns undefined and goes to sharp, which decodes it
 * or names what is wrong.
 */
import { crc32, inflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Chunks that carry no pixel information; any other ancillary chunk sends the image to sharp. */
const INERT = new Set(['tEXt', 'zTXt', 'iTXt', 'pHYs', 'tIME']);
const GREY = 0;
const RGB = 2;

/** Interleaved 8-bit pixels, `channels` per pixel, or undefined when sharp must decode. */
export function plainPngPixels(
  bytes: Uint8Array,
  width: number,
  height: number,
  channels: number,
): Uint8Array | undefined {
  if (bytes.length < SIGNATURE.length || !SIGNATURE.equals(bytes.subarray(0, SIGNATURE.length))) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat: Uint8Array[] = [];
  let offset = SIGNATURE.length;
  let header = false;
  let ended = false;
  while (!ended) {
    if (offset + 12 > bytes.length) return;
    const length = view.getUint32(offset);
    const end = offset + 12 + length;
    if (end > bytes.length) return;
    const typeAndData = bytes.subarray(offset + 4, offset + 8 + length);
    if (crc32(typeAndData) !== view.getUint32(offset + 8 + length)) return;
    const type = String.fromCharCode(...typeAndData.subarray(0, 4));
    const data = typeAndData.subarray(4);
    if (type === 'IHDR') {
      if (header || length !== 13) return;
      const [depth, colour, compression, filter, interlace] = data.subarray(8, 13);
      const wanted = channels === 1 ? GREY : channels === 3 ? RGB : -1;
      if (view.getUint32(offset + 8) !== width || view.getUint32(offset + 12) !== height) return;
      if (depth !== 8 || colour !== wanted || compression !== 0 || filter !== 0 || interlace !== 0) return;
      header = true;
    } else if (!header) {
      return;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      ended = true;
    } else if (!INERT.has(type)) {
      return;
    }
    offset = end;
  }
  const stride = width * channels;
  let filtered: Buffer;
  try {
    filtered = inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height });
  } catch {
    return;
  }
  if (filtered.length !== (stride + 1) * height) return;
  return unfilter(filtered, stride, height, channels);
}

/** Undoes the PNG scanline filters (none, sub, up, average, Paeth) of 8-bit samples. */
function unfilter(filtered: Uint8Array, stride: number, height: number, bpp: number): Uint8Array | undefined {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const kind = filtered[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const raw = filtered[src + x]!;
      const a = x >= bpp ? out[row + x - bpp]! : 0;
      const b = y > 0 ? out[up + x]! : 0;
      const c = x >= bpp && y > 0 ? out[up + x - bpp]! : 0;
      let predicted: number;
      switch (kind) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = a;
          break;
        case 2:
          predicted = b;
          break;
        case 3:
          predicted = (a + b) >> 1;
          break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          return;
      }
      out[row + x] = (raw + predicted) & 0xff;
    }
  }
  return out;
}
