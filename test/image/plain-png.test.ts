/**
 * The plain-PNG path gives exactly the tensor sharp's pipeline gives, for the images it takes,
 * and hands everything else to sharp.
 */
import sharp, { type PngOptions } from 'sharp';
import { describe, expect, it } from 'vitest';
import { plainPngPixels } from '../../src/image/plain-png.js';
import { preprocess, preprocessWithSharp } from '../../src/image/preprocess.js';
import type { InputSpec } from '../../src/model/manifest.js';

const spec = (channels: 1 | 3, size: number): InputSpec => ({
  channels,
  height: size,
  width: size,
  colorspace: channels === 1 ? 'grey' : 'rgb',
  resize: 'contain',
  background: channels === 1 ? [0] : [0, 0, 0],
  mean: channels === 1 ? [0.5] : [0.485, 0.456, 0.406],
  std: channels === 1 ? [0.25] : [0.229, 0.224, 0.225],
  scale: 1 / 255,
});

/** Random pixels as sharp encodes them as a PNG, with its adaptive filters (all five kinds). */
function randomPng(channels: 1 | 3, size: number, seed: number, options: PngOptions = {}): Promise<Buffer> {
  let s = seed;
  const pixels = Buffer.alloc(size * size * channels);
  // Smooth areas and noise, so that the encoder picks different filters on different rows.
  for (let k = 0; k < pixels.length; k++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    pixels[k] = k % 97 < 40 ? (k >> 3) & 0xff : s & 0xff;
  }
  const image = sharp(pixels, { raw: { width: size, height: size, channels } });
  // sharp writes one band as RGB unless told it is greyscale.
  return (channels === 1 ? image.toColourspace('b-w') : image)
    .png({ adaptiveFiltering: true, palette: false, ...options })
    .toBuffer();
}

/** A PNG's chunks, to insert or break one. */
function chunks(png: Buffer): { type: string; data: Buffer; raw: Buffer }[] {
  const out = [];
  for (let o = 8; o < png.length;) {
    const length = png.readUInt32BE(o);
    out.push({
      type: png.toString('latin1', o + 4, o + 8),
      data: png.subarray(o + 8, o + 8 + length),
      raw: png.subarray(o, o + 12 + length),
    });
    o += 12 + length;
  }
  return out;
}

async function chunk(type: string, data: Buffer): Promise<Buffer> {
  const { crc32 } = await import('node:zlib');
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

async function withChunk(png: Buffer, extra: Buffer): Promise<Buffer> {
  const [signature, ihdr] = [png.subarray(0, 8), chunks(png)[0]!.raw];
  return Buffer.concat([signature, ihdr, extra, png.subarray(8 + ihdr.length)]);
}

describe('plain PNGs', () => {
  it('decode to exactly the tensor of sharp, grey and RGB, every filter and compression level', async () => {
    for (const [channels, size] of [
      [1, 28],
      [3, 32],
    ] as const) {
      for (const level of [0, 6, 9]) {
        for (let seed = 1; seed <= 3; seed++) {
          const png = await randomPng(channels, size, seed, { compressionLevel: level });
          expect(plainPngPixels(png, size, size, channels), `level ${level}`).toBeDefined();
          const fast = await preprocess(png, spec(channels, size));
          const slow = await preprocessWithSharp(png, spec(channels, size));
          expect(fast.source).toEqual(slow.source);
          expect([...fast.tensor]).toEqual([...slow.tensor]);
        }
      }
    }
  });

  it('reads text chunks past, and a zlib stream split over several IDAT chunks', async () => {
    const png = await randomPng(1, 28, 4);
    const text = await chunk('tEXt', Buffer.from('Comment\0made by a test', 'latin1'));
    const withText = await withChunk(png, text);
    const parts = chunks(png);
    const idat = Buffer.concat(parts.filter((c) => c.type === 'IDAT').map((c) => c.data));
    const split = Buffer.concat([
      png.subarray(0, 8),
      parts[0]!.raw,
      await chunk('IDAT', idat.subarray(0, 100)),
      await chunk('IDAT', idat.subarray(100)),
      await chunk('IEND', Buffer.alloc(0)),
    ]);
    for (const variant of [withText, split]) {
      expect(plainPngPixels(variant, 28, 28, 1)).toEqual(plainPngPixels(png, 28, 28, 1));
      expect([...(await preprocess(variant, spec(1, 28))).tensor]).toEqual([
        ...(await preprocessWithSharp(png, spec(1, 28))).tensor,
      ]);
    }
  });

  it('leaves to sharp what it cannot vouch for: other sizes and colour types, transparency, gamma, orientation, a bad checksum, other formats', async () => {
    const grey = await randomPng(1, 28, 5);
    expect(plainPngPixels(grey, 32, 32, 1)).toBeUndefined();
    expect(plainPngPixels(grey, 28, 28, 3)).toBeUndefined();
    expect(plainPngPixels(await randomPng(3, 28, 5), 28, 28, 1)).toBeUndefined();
    for (const [type, data] of [
      ['tRNS', Buffer.from([0, 0])],
      ['gAMA', Buffer.from([0, 0, 0xb1, 0x8f])],
      ['eXIf', Buffer.from('MM\0*', 'latin1')],
      ['iCCP', Buffer.from('p\0\0x', 'latin1')],
    ] as const) {
      expect(plainPngPixels(await withChunk(grey, await chunk(type, data)), 28, 28, 1), type).toBeUndefined();
    }
    const corrupt = Buffer.from(grey);
    corrupt.writeUInt8(corrupt.readUInt8(corrupt.length - 20) ^ 0xff, corrupt.length - 20);
    expect(plainPngPixels(corrupt, 28, 28, 1)).toBeUndefined();
    expect(plainPngPixels(grey.subarray(0, grey.length - 12), 28, 28, 1)).toBeUndefined();
    const jpeg = await sharp(await randomPng(1, 28, 6))
      .jpeg()
      .toBuffer();
    expect(plainPngPixels(jpeg, 28, 28, 1)).toBeUndefined();
    await expect(preprocess(corrupt, spec(1, 28))).rejects.toMatchObject({
      statusCode: 422,
      code: 'PREDIFY_ERR_IMAGE_UNDECODABLE',
    });
  });
});
