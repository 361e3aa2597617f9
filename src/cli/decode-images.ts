#!/usr/bin/env node
/**
 * Decodes a folder of images (flat, or one folder per class) with the service's own decoder into
 * a pixel cache at a model's input geometry: what scripts/train_feedback.py trains on. It runs
 * this itself; run it alone to decode once on a machine with Node and train elsewhere.
 */
import { clock, progressReporter } from '../robustness/progress.js';
import { decodeFolder, PixelCacheError, type PixelGeometry } from '../image/pixel-cache.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: decode-images --images DIR --out CACHE --size HxW [--channels 1|3]
       [--resize contain|cover|fill] [--background R,G,B] [--skip-unreadable] [--concurrency N]

Writes CACHE/pixels.u8 (N x H x W x C bytes) and CACHE/index.json (the files, their sha256,
the unreadable ones). A cache of the same files and geometry is reused.`;

const { values } = parseCli(
  {
    options: {
      images: { type: 'string' },
      out: { type: 'string' },
      size: { type: 'string' },
      channels: { type: 'string', default: '3' },
      resize: { type: 'string', default: 'cover' },
      background: { type: 'string', default: '0,0,0' },
      'skip-unreadable': { type: 'boolean', default: false },
      concurrency: { type: 'string' },
      help: { type: 'boolean' },
    },
  },
  usage,
);

function fail(message: string): never {
  console.error(`decode-images: ${message}`);
  process.exit(2);
}

if (!values.images || !values.out || !values.size)
  fail(`--images, --out and --size are required\n\n${usage}`);
const size = /^(\d+)(?:x(\d+))?$/.exec(values.size);
if (!size) fail(`--size ${values.size}: write HxW (e.g. 224x224) or N`);
const height = Number(size[1]);
const width = Number(size[2] ?? size[1]);
const channels = Number(values.channels);
if (channels !== 1 && channels !== 3) fail(`--channels ${values.channels}: 1 (grey) or 3 (RGB)`);
if (!['contain', 'cover', 'fill'].includes(values.resize))
  fail(`--resize ${values.resize}: contain, cover or fill`);
const background = values.background.split(',').map(Number);
if (
  background.length < 1 ||
  background.length > 3 ||
  background.some((v) => !Number.isInteger(v) || v < 0 || v > 255)
)
  fail(`--background ${values.background}: one to three whole numbers 0..255`);
if (height < 1 || width < 1 || height > 4096 || width > 4096)
  fail(`--size ${values.size}: 1..4096 pixels a side`);

const geometry: PixelGeometry = {
  channels,
  height,
  width,
  resize: values.resize as PixelGeometry['resize'],
  background,
};
const started = performance.now();
try {
  const { index, reused } = await decodeFolder(values.images, geometry, values.out, {
    skipUnreadable: values['skip-unreadable'],
    concurrency: wholeNumber('concurrency', values.concurrency, 8),
    onProgress: progressReporter('decoding', 'images'),
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    JSON.stringify({
      cache: values.out,
      count: index.count,
      unreadable: index.unreadable.length,
      ignored: index.ignored,
      digest: index.digest,
      reused,
      elapsed: clock(seconds),
    }),
  );
} catch (err) {
  if (err instanceof PixelCacheError) fail(err.message);
  throw err;
}
