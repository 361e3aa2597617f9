/** Fashion-MNIST from Debian's dataset-fashion-mnist package (gzipped IDX files). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

export const FASHION_DIR = '/usr/share/datasets/fashion-mnist';

export interface Dataset {
  /** count x height x width bytes */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

async function readIdx(file: string): Promise<{ dims: number[]; data: Uint8Array }> {
  let raw: Buffer;
  try {
    raw = gunzipSync(await readFile(file));
  } catch (err) {
    throw new Error(
      `${file}: ${(err as Error).message.split('\n')[0]} (install Debian's dataset-fashion-mnist: scripts/setup-debian.sh)`,
      { cause: err },
    );
  }
  const ndim = raw[3]!;
  const dims = Array.from({ length: ndim }, (_, k) => raw.readUInt32BE(4 + 4 * k));
  return { dims, data: new Uint8Array(raw.buffer, raw.byteOffset + 4 + 4 * ndim) };
}

/** split 'train' (60 000 images) or 't10k' (10 000). */
export async function loadFashion(split: 'train' | 't10k', dir = FASHION_DIR): Promise<Dataset> {
  const images = await readIdx(path.join(dir, `${split}-images-idx3-ubyte.gz`));
  const labels = await readIdx(path.join(dir, `${split}-labels-idx1-ubyte.gz`));
  const [count, height, width] = images.dims as [number, number, number];
  if (labels.dims[0] !== count) throw new Error(`${split}: ${count} images but ${labels.dims[0]} labels`);
  return { images: images.data, labels: labels.data, count, height, width };
}
