/**
 * A folder of images decoded once, by the service's own decoder, into one file of 8-bit pixels
 * at a model's input size: what the feedback trainer (scripts/train_feedback.py) reads, so that
 * it learns on exactly the pixels the served model will see, and decodes each image once rather
 * than once an epoch. The layout (pixels.u8 + index.json) is documented in
 * docs/guides/predify-your-network.md.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { InputSpec } from '../model/manifest.js';
import { decodeAtModelSize } from './preprocess.js';

/** File names read as images: the formats the service decodes (as the study commands read them). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff']);

/** What decides the pixels: a cache made with another geometry is not reused. */
export type PixelGeometry = Pick<InputSpec, 'channels' | 'height' | 'width' | 'resize' | 'background'>;

export interface PixelIndex {
  format: 'predify-pixels';
  version: 1;
  geometry: PixelGeometry;
  /** interleaved, image after image: count x height x width x channels bytes */
  layout: 'NHWC-uint8';
  count: number;
  /** relative to root, sorted, the order of the images in pixels.u8 */
  files: string[];
  /** sha256 of each file's bytes, in the same order */
  sha256: string[];
  /** sha256 over the files' names and digests: the set's identity */
  digest: string;
  /** files with an image's extension that could not be decoded (only with skipUnreadable) */
  unreadable: { file: string; reason: string }[];
  /** other files found and left out, by extension */
  ignored: number;
  /** size and modification time of each file when decoded: a cache is reused only if all match */
  stamps: string[];
}

export class PixelCacheError extends Error {}

type Decoded =
  { file: string; pixels: Uint8Array; sha: string; stamp: string } | { file: string; reason: string };

/** Every image file below `root`, as sorted relative paths, and how many other files there are. */
export async function listImages(root: string): Promise<{ files: string[]; ignored: number }> {
  let entries;
  try {
    entries = await readdir(root, { recursive: true, withFileTypes: true });
  } catch (err) {
    throw new PixelCacheError(`${root}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const files: string[] = [];
  let ignored = 0;
  for (const e of entries) {
    if (!e.isFile()) continue;
    const rel = path.relative(root, path.join(e.parentPath, e.name));
    if (rel.split(path.sep).some((part) => part.startsWith('.'))) continue;
    if (IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())) files.push(rel);
    else ignored++;
  }
  // Byte order, not locale order: the same on every machine.
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { files, ignored };
}

const stampOf = (s: { size: number; mtimeMs: number }) => `${s.size}:${Math.round(s.mtimeMs)}`;

async function reusable(out: string, geometry: PixelGeometry, root: string, files: string[]) {
  let index: PixelIndex;
  try {
    index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as PixelIndex;
  } catch {
    return undefined;
  }
  if (JSON.stringify(index.geometry) !== JSON.stringify(geometry)) return undefined;
  const decoded = new Set([...index.files, ...index.unreadable.map((u) => u.file)]);
  if (decoded.size !== files.length || files.some((f) => !decoded.has(f))) return undefined;
  const stamps = await Promise.all(index.files.map(async (f) => stampOf(await stat(path.join(root, f)))));
  return stamps.every((s, k) => s === index.stamps[k]) ? index : undefined;
}

export interface DecodeOptions {
  /** count and list undecodable images instead of stopping at the first */
  skipUnreadable?: boolean;
  /** images decoded at once (sharp runs them on its own threads) */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Decodes every image below `root` at the geometry given into `out`/pixels.u8 and
 * `out`/index.json, written under temporary names and renamed when complete. An existing cache
 * of the same files (names, sizes, times) and geometry is reused as it is.
 */
export async function decodeFolder(
  root: string,
  geometry: PixelGeometry,
  out: string,
  options: DecodeOptions = {},
): Promise<{ index: PixelIndex; reused: boolean }> {
  const { files, ignored } = await listImages(root);
  if (files.length === 0)
    throw new PixelCacheError(`${root}: no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
  const cached = await reusable(out, geometry, root, files);
  if (cached) return { index: cached, reused: true };

  await mkdir(out, { recursive: true });
  const partial = path.join(out, 'pixels.u8.partial');
  const sink = await open(partial, 'w');
  const spec = {
    ...geometry,
    colorspace: geometry.channels === 1 ? 'grey' : 'rgb',
    mean: [0],
    std: [1],
    scale: 1,
  } as InputSpec;
  const frame = geometry.height * geometry.width * geometry.channels;
  const kept: string[] = [];
  const digests: string[] = [];
  const stamps: string[] = [];
  const unreadable: PixelIndex['unreadable'] = [];
  const concurrency = Math.max(1, options.concurrency ?? 8);
  try {
    // Decoded `concurrency` at a time, written in the files' order.
    for (let start = 0; start < files.length; start += concurrency) {
      const chunk = files.slice(start, start + concurrency);
      const decoded = await Promise.all(
        chunk.map(async (file): Promise<Decoded> => {
          const full = path.join(root, file);
          const [bytes, info] = await Promise.all([readFile(full), stat(full)]);
          try {
            const { pixels } = await decodeAtModelSize(bytes, spec, 'model');
            if (pixels.data.length !== frame)
              throw new Error(`decoded to ${pixels.width}x${pixels.height}x${pixels.channels}`);
            return {
              file,
              pixels: pixels.data,
              sha: createHash('sha256').update(bytes).digest('hex'),
              stamp: stampOf(info),
            };
          } catch (err) {
            return { file, reason: (err as Error).message.split('\n')[0]! };
          }
        }),
      );
      for (const d of decoded) {
        if ('reason' in d) {
          if (!options.skipUnreadable)
            throw new PixelCacheError(
              `${path.join(root, d.file)}: cannot be decoded: ${d.reason} (--skip-unreadable counts and lists such files instead)`,
            );
          unreadable.push({ file: d.file, reason: d.reason });
          continue;
        }
        await sink.write(d.pixels);
        kept.push(d.file);
        digests.push(d.sha);
        stamps.push(d.stamp);
      }
      options.onProgress?.(Math.min(start + concurrency, files.length), files.length);
    }
    await sink.close();
  } catch (err) {
    await sink.close();
    await rm(partial, { force: true });
    throw err;
  }
  const digest = createHash('sha256');
  kept.forEach((f, k) => digest.update(`${f}\0${digests[k]}\n`));
  const index: PixelIndex = {
    format: 'predify-pixels',
    version: 1,
    geometry,
    layout: 'NHWC-uint8',
    count: kept.length,
    files: kept,
    sha256: digests,
    digest: digest.digest('hex'),
    unreadable,
    ignored,
    stamps,
  };
  await rename(partial, path.join(out, 'pixels.u8'));
  await writeFile(path.join(out, 'index.json.partial'), JSON.stringify(index));
  await rename(path.join(out, 'index.json.partial'), path.join(out, 'index.json'));
  return { index, reused: false };
}
