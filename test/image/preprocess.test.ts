/** Preprocessing follows the manifest and reproduces the PyTorch side's input tensors. */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { preprocess } from '../../src/image/preprocess.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest, type InputSpec } from '../../src/model/manifest.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';
import { gifBomb, pngBomb } from './bombs.js';

let spec: InputSpec;
let golden: Golden;

beforeAll(async () => {
  const manifest = await readManifest(DEFAULT_MODEL);
  spec = manifest.input;
  golden = await readGolden(DEFAULT_MODEL, manifest);
});

const rgbSpec = (): InputSpec => ({
  channels: 3,
  height: 4,
  width: 4,
  colorspace: 'rgb',
  resize: 'fill',
  background: [0, 0, 0],
  mean: [0, 0, 0],
  std: [1, 1, 1],
  scale: 1 / 255,
});

describe('preprocess', () => {
  it('turns each shipped sample into exactly the tensor the PyTorch reference used', async () => {
    const files = await readdir(SAMPLES);
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const c of golden.cases) {
      const { tensor } = await preprocess(await readFile(path.join(SAMPLES, c.name)), spec);
      expect(tensor).toHaveLength(c.input.length);
      tensor.forEach((v, k) => expect(Math.abs(v - c.input[k]!)).toBeLessThanOrEqual(1e-6));
    }
  });

  it('decodes JPEG, WebP, GIF and TIFF to the model input size', async () => {
    const base = sharp({
      create: { width: 60, height: 30, channels: 3, background: { r: 255, g: 255, b: 255 } },
    });
    for (const format of ['jpeg', 'webp', 'gif', 'tiff'] as const) {
      const bytes = await base.clone().toFormat(format).toBuffer();
      const { tensor, source } = await preprocess(bytes, spec);
      expect(source).toEqual({ format, width: 60, height: 30 });
      expect(tensor).toHaveLength(28 * 28);
    }
  });

  it('letterboxes a wide image on the background ("contain")', async () => {
    // White 56x28 image -> 28x14 centred on black: rows 0-6 and 21-27 are background.
    const bytes = await sharp({ create: { width: 56, height: 28, channels: 3, background: '#ffffff' } })
      .png()
      .toBuffer();
    const { tensor } = await preprocess(bytes, spec);
    const pixel = (y: number) => tensor[y * 28 + 14]! * spec.std[0]! + spec.mean[0]!;
    expect(pixel(2)).toBeCloseTo(0, 5);
    expect(pixel(14)).toBeCloseTo(1, 5);
    expect(pixel(25)).toBeCloseTo(0, 5);
  });

  it('lays out RGB channel-major and normalises with mean and std', async () => {
    const bytes = await sharp({
      create: { width: 4, height: 4, channels: 3, background: { r: 255, g: 0, b: 51 } },
    })
      .png()
      .toBuffer();
    const s = { ...rgbSpec(), mean: [0.5, 0, 0], std: [0.5, 1, 0.5] };
    const { tensor } = await preprocess(bytes, s);
    expect(tensor.slice(0, 16).every((v) => Math.abs(v - 1) < 1e-6)).toBe(true); // (1 - 0.5) / 0.5
    expect(tensor.slice(16, 32).every((v) => v === 0)).toBe(true);
    expect(tensor.slice(32, 48).every((v) => Math.abs(v - 0.4) < 1e-6)).toBe(true); // 0.2 / 0.5
  });

  it('applies the EXIF orientation', async () => {
    // A 16x8 image, left half red / right half blue, tagged "rotate 90° clockwise"
    // (orientation 6): displayed as 8x16, red on top.
    const raw = Buffer.alloc(16 * 8 * 3);
    for (let k = 0; k < 16 * 8; k++) raw[k * 3 + (k % 16 < 8 ? 0 : 2)] = 255;
    const bytes = await sharp(raw, { raw: { width: 16, height: 8, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const { tensor } = await preprocess(bytes, { ...rgbSpec(), width: 1, height: 2 });
    expect(tensor[0]).toBeGreaterThan(0.8); // red channel, top
    expect(tensor[1]).toBeLessThan(0.2); // red channel, bottom
  });

  it('refuses bytes that are not an image, naming the problem', async () => {
    await expect(preprocess(Buffer.from('hello, world'), spec)).rejects.toMatchObject({
      statusCode: 422,
      code: 'PREDIFY_ERR_IMAGE_UNDECODABLE',
    });
  });

  it('refuses a truncated PNG', async () => {
    const bytes = await readFile(path.join(SAMPLES, golden.cases[0]!.name));
    await expect(preprocess(bytes.subarray(0, bytes.length / 2), spec)).rejects.toMatchObject({
      statusCode: 422,
    });
  });

  it('refuses formats the service does not serve, such as SVG', async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    );
    await expect(preprocess(svg, spec)).rejects.toMatchObject({
      statusCode: 422,
      message: expect.stringContaining("'svg'"),
    });
  });
});

describe('decompression bombs', () => {
  it.each([
    ['PNG', pngBomb(50_000, 50_000)],
    ['GIF', gifBomb(50_000, 50_000)],
  ])(
    'refuses a tiny %s that claims 50k x 50k pixels from its header, without allocating it',
    async (_f, bomb) => {
      expect(bomb.length).toBeLessThan(200);
      const before = process.memoryUsage().rss;
      await expect(preprocess(bomb, spec)).rejects.toMatchObject({
        code: 'PREDIFY_ERR_IMAGE_UNDECODABLE',
        message: expect.stringMatching(/pixel limit/),
      });
      // Decoding it would take 2.5 GB for one grey channel.
      expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20);
    },
  );
});
