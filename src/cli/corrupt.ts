#!/usr/bin/env node
/**
 * Writes ImageNet-C corrupted copies of a directory of images, in the release's layout:
 * OUT/<corruption>/<severity>/<the image's path below DIR, as .png>. Each image is corrupted at
 * its own size, as the reference does (ImageNet-C itself corrupted 224-pixel centre crops).
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeWhole, encodePng as pngOf } from '../image/codecs.js';
import {
  corruptionSeed,
  corruptPixels,
  loadCorruptionAssets,
  parseCorruptions,
  parseSeverities,
  type Corruption,
  type Pixels,
} from '../robustness/imagenet-c/index.js';
import { IMAGE_EXTENSIONS } from '../robustness/image-set.js';
import { progressReporter } from '../robustness/progress.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run corrupt -- --images DIR --out DIR [--corruptions all|benchmark|NAME,...] [--severities 1,2,3,4,5] [--seed N]

  --images       a directory of images (${[...IMAGE_EXTENSIONS].join(' ')}), searched recursively
  --out          where to write OUT/<corruption>/<severity>/<path below DIR>.png
  --corruptions  all (the default: ImageNet-C's 15 benchmark and 4 validation corruptions),
                 benchmark, validation, a family (noise, blur, weather, digital) or names,
                 comma-separated
  --severities   1..5, as a list or a range (default 1-5)
  --seed         varies every random corruption; the same seed gives the same images (default 0)
  --skip-unreadable  go on past images that cannot be decoded (listed at the end)

Images are corrupted at their own size, as RGB (ImageNet-C's reference does the same); a grey
image whose corrupted copy is still grey is written grey.`;

const { values } = parseCli(
  {
    options: {
      images: { type: 'string' },
      out: { type: 'string' },
      corruptions: { type: 'string', default: 'all' },
      severities: { type: 'string', default: '1-5' },
      seed: { type: 'string' },
      'skip-unreadable': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

function usageError(message: string): never {
  console.error(`${message}\n\n${usage}`);
  process.exit(2);
}

if (!values.images) usageError('--images DIR is required');
if (!values.out) usageError('--out DIR is required');
let corruptions: Corruption[];
let severities: number[];
try {
  corruptions = parseCorruptions(values.corruptions);
  severities = parseSeverities(values.severities);
} catch (err) {
  usageError(`${(err as Error).message}`);
}
const seed = wholeNumber('seed', values.seed, 0);
const root = path.resolve(values.images);
const out = path.resolve(values.out);

let files: string[];
try {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  files = entries
    .filter(
      (e) =>
        e.isFile() && !e.name.startsWith('.') && IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase()),
    )
    .map((e) => path.join(e.parentPath, e.name))
    .filter((f) => !f.startsWith(out + path.sep))
    .sort();
} catch (err) {
  usageError(`--images ${values.images}: ${(err as Error).message}`);
}
if (files.length === 0)
  usageError(`--images ${values.images}: no images (${[...IMAGE_EXTENSIONS].join(' ')})`);

const assets = await loadCorruptionAssets();
const total = files.length * corruptions.length * severities.length;
console.error(
  `corrupting ${files.length} images x ${corruptions.length} corruptions x ${severities.length} severities = ${total} images into ${out}`,
);
const progress = progressReporter('corrupt', 'images');
const unreadable: { file: string; reason: string }[] = [];
const started = performance.now();
let done = 0;
for (const file of files) {
  const relative = path.relative(root, file);
  let image: Pixels;
  let grey: boolean;
  try {
    ({ image, grey } = await decodeWhole(await readFile(file)));
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!;
    if (!values['skip-unreadable']) {
      console.error(
        `\n${file}: not a decodable image: ${reason} (--skip-unreadable goes on past such files)`,
      );
      process.exit(1);
    }
    unreadable.push({ file: relative, reason });
    done += corruptions.length * severities.length;
    progress(done, total);
    continue;
  }
  const name = relative.replace(/\.[^./\\]+$/, '') + '.png';
  for (const corruption of corruptions)
    for (const severity of severities) {
      const result = await corruptPixels(
        image,
        corruption,
        severity,
        corruptionSeed(corruption, severity, relative, seed),
        assets,
      );
      const target = path.join(out, corruption, String(severity), name);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, await encodePng(result, grey));
      progress(++done, total);
    }
}
const seconds = (performance.now() - started) / 1000;
console.log(
  `wrote ${done - unreadable.length * corruptions.length * severities.length} images to ${out} in ${seconds.toFixed(1)} s` +
    (unreadable.length
      ? `; ${unreadable.length} unreadable, skipped:\n${unreadable.map((u) => `  ${u.file}: ${u.reason}`).join('\n')}`
      : ''),
);

/** PNG, grey when the source was grey and the corruption left it so. */
async function encodePng(p: Pixels, sourceGrey: boolean): Promise<Buffer> {
  let keepGrey = sourceGrey;
  for (let k = 0; keepGrey && k < p.data.length; k += 3)
    keepGrey = p.data[k] === p.data[k + 1] && p.data[k] === p.data[k + 2];
  return pngOf(p.data, p.width, p.height, keepGrey);
}
