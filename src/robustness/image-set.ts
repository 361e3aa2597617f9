/**
 * The images a study runs on, in the layouts users hold them:
 * - an ImageFolder, DIR/<class>/<image>: clean images, corrupted by the study itself;
 * - ImageNet-C's release layout, DIR/<corruption>/<severity>/<class>/<image>: images already
 *   corrupted (with, optionally, DIR/clean/<class>/<image> for the clean condition);
 * - Fashion-MNIST from Debian's package (the shipped model's own data), named `fashion-mnist`.
 * Class folders are matched to the model's labels by name or through a class map; every
 * refusal (a folder no label matches, an empty set, a folder that is no corruption) happens
 * here, before a study starts, and names what it refuses.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CORRUPTIONS, isCorruption, type Corruption } from './imagenet-c/index.js';
import { loadFashion, type Dataset } from './fashion-mnist.js';

import { IMAGE_EXTENSIONS } from '../image/pixel-cache.js';

export { IMAGE_EXTENSIONS };

export const FASHION_MNIST = 'fashion-mnist';

export class ImageSetError extends Error {}

export interface StudyImage {
  /** the path below the set's directory (or fashion-mnist/<split>/<index>): how reports name it */
  id: string;
  /** the model's label index */
  label: number;
  /** a file to decode, or Fashion-MNIST's grey pixels at the model's size */
  source: { file: string } | { pixels: Uint8Array; width: number; height: number };
}

export interface ClassMatch {
  folder: string;
  label: number;
  /** how the folder was matched: by the model's label, its index or the class map */
  by: 'name' | 'index' | 'class-map';
}

export interface ImageSet {
  layout: 'imagefolder' | 'imagenet-c' | 'fashion-mnist';
  root: string;
  /** clean images: an ImageFolder's, Fashion-MNIST's, or an ImageNet-C set's clean/ folder */
  clean: StudyImage[];
  /** images already corrupted (ImageNet-C layout), by corruption and severity */
  corrupted?: Map<Corruption, Map<number, StudyImage[]>>;
  classes: ClassMatch[];
  /** files that are not images by their extension, left out */
  ignored: string[];
}

export interface ReadOptions {
  /** the model's labels, in index order */
  labels: readonly string[];
  /** folder name -> label name or index (--class-map) */
  classMap?: ReadonlyMap<string, string | number>;
  /** at most this many images of each class, the first by name (all when absent) */
  perClass?: number;
  /** Fashion-MNIST only: which split, and which of its images */
  fashion?: { split: 'train' | 't10k'; from?: number; to?: number; part?: FashionPart };
}

/**
 * Fashion-MNIST's test set in two fixed parts, by each class's images in index order: the first
 * 500 of each class are `dev` (what studies, design and calibration checks may read), the last
 * 500 `final` (read once, for the figures reported after every choice is made).
 */
export type FashionPart = 'dev' | 'final';
export const FASHION_PART_SIZE = 500;

/** Lower case, letters and digits only: 'T-shirt/top' and 'T-shirt_top' are one name. */
const squash = (s: string) => s.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '');

/**
 * Each class folder's label: through the class map if one is given (every folder must be in
 * it), else the label of the same name (exactly, then ignoring case and punctuation), else a
 * folder named by a whole number is that label's index. Throws naming every folder that
 * matches nothing.
 */
export function matchClasses(
  folders: readonly string[],
  labels: readonly string[],
  classMap?: ReadonlyMap<string, string | number>,
): ClassMatch[] {
  const bySquash = new Map<string, number>();
  labels.forEach((l, i) => {
    if (!bySquash.has(squash(l))) bySquash.set(squash(l), i);
  });
  const labelIndex = (value: string | number): number | undefined => {
    if (typeof value === 'number')
      return Number.isInteger(value) && value >= 0 && value < labels.length ? value : undefined;
    const exact = labels.indexOf(value);
    return exact >= 0 ? exact : bySquash.get(squash(value));
  };
  const out: ClassMatch[] = [];
  const unmatched: string[] = [];
  for (const folder of folders) {
    if (classMap) {
      const mapped = classMap.get(folder);
      const label = mapped === undefined ? undefined : labelIndex(mapped);
      if (label === undefined)
        unmatched.push(
          mapped === undefined
            ? `${folder} (not in the class map)`
            : `${folder} -> ${mapped} (no such label)`,
        );
      else out.push({ folder, label, by: 'class-map' });
      continue;
    }
    const byName = labelIndex(folder);
    if (byName !== undefined) out.push({ folder, label: byName, by: 'name' });
    else if (/^\d+$/.test(folder) && Number(folder) < labels.length)
      out.push({ folder, label: Number(folder), by: 'index' });
    else unmatched.push(folder);
  }
  if (unmatched.length)
    throw new ImageSetError(
      `class folder${unmatched.length > 1 ? 's' : ''} matching no label of the model: ${unmatched.join(', ')}. ` +
        (classMap
          ? 'Add them to the class map.'
          : `Name folders after the model's labels (${preview(labels)}) or their indices 0..${labels.length - 1}, or give --class-map FILE.`),
    );
  return out;
}

const preview = (xs: readonly string[]) =>
  xs.length > 6 ? `${xs.slice(0, 5).join(', ')}, ... ${xs.at(-1)}` : xs.join(', ');

/**
 * A class map: JSON, either { folder: label or index } or ImageNet's class index
 * { "0": ["n01440764", "tench"], ... } (folder = the synset id, label = the index), or CSV lines
 * `folder,label` (a header line `folder,label` is allowed).
 */
export async function readClassMap(file: string): Promise<Map<string, string | number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ImageSetError(`--class-map ${file}: ${(err as Error).message}`);
  }
  const map = new Map<string, string | number>();
  if (/^\s*[{[]/.test(text)) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new ImageSetError(`--class-map ${file}: not valid JSON: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new ImageSetError(`--class-map ${file}: expected an object of folder -> label`);
    for (const [key, value] of Object.entries(raw)) {
      if (Array.isArray(value) && typeof value[0] === 'string' && /^\d+$/.test(key))
        map.set(value[0], Number(key));
      else if (typeof value === 'string' || typeof value === 'number') map.set(key, value);
      else
        throw new ImageSetError(
          `--class-map ${file}: the entry for '${key}' is neither a label, an index nor [folder, name]`,
        );
    }
  } else {
    for (const [n, line] of text.split(/\r?\n/).entries()) {
      if (!line.trim() || line.startsWith('#')) continue;
      const comma = line.indexOf(',');
      if (comma < 0) throw new ImageSetError(`--class-map ${file}, line ${n + 1}: expected 'folder,label'`);
      const folder = line.slice(0, comma).trim();
      const label = line
        .slice(comma + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (n === 0 && folder === 'folder' && label === 'label') continue;
      map.set(folder, /^\d+$/.test(label) ? Number(label) : label);
    }
  }
  if (map.size === 0) throw new ImageSetError(`--class-map ${file}: no entries`);
  return map;
}

async function subdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
}

/** Every image file below `dir` (any depth), by name; other files are returned apart. */
async function imageFiles(dir: string): Promise<{ images: string[]; other: string[] }> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const images: string[] = [];
  const other: string[] = [];
  for (const e of entries) {
    if (!e.isFile() || e.name.startsWith('.')) continue;
    const file = path.join(e.parentPath, e.name);
    (IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase()) ? images : other).push(file);
  }
  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return { images: images.sort(byName), other: other.sort(byName) };
}

/** An ImageFolder's images with their labels (`classes` given: the folders must be those). */
async function readFolder(
  root: string,
  dir: string,
  options: ReadOptions,
  classes?: readonly ClassMatch[],
): Promise<{ images: StudyImage[]; classes: ClassMatch[]; ignored: string[] }> {
  const folders = await subdirectories(dir);
  if (folders.length === 0) {
    const { images } = await imageFiles(dir);
    throw new ImageSetError(
      `${dir}: no class folders${images.length ? ` (it holds ${images.length} images directly: put each in a folder named after its class, DIR/<class>/<image>)` : ''}`,
    );
  }
  const matched = classes
    ? folders.map((folder) => {
        const known = classes.find((c) => c.folder === folder);
        return known ?? matchClasses([folder], options.labels, options.classMap)[0]!;
      })
    : matchClasses(folders, options.labels, options.classMap);
  const images: StudyImage[] = [];
  const ignored: string[] = [];
  for (const c of matched) {
    const files = await imageFiles(path.join(dir, c.folder));
    ignored.push(...files.other.map((f) => path.relative(root, f)));
    const taken = options.perClass !== undefined ? files.images.slice(0, options.perClass) : files.images;
    for (const file of taken)
      images.push({ id: path.relative(root, file), label: c.label, source: { file } });
  }
  return { images, classes: matched, ignored };
}

const SEVERITY_DIRS = ['1', '2', '3', '4', '5'];

async function isImagenetC(dir: string, folders: readonly string[]): Promise<boolean> {
  for (const f of folders) {
    if (!isCorruption(f)) continue;
    const inner = await subdirectories(path.join(dir, f));
    if (inner.length > 0 && inner.every((s) => SEVERITY_DIRS.includes(s))) return true;
  }
  return false;
}

/** Reads an image set: `fashion-mnist`, or a directory in either layout. */
export async function readImageSet(where: string, options: ReadOptions): Promise<ImageSet> {
  if (where === FASHION_MNIST) return readFashion(options);
  const root = path.resolve(where);
  let folders: string[];
  try {
    folders = await subdirectories(root);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageSetError(
      `--images ${where}: ${code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : (err as Error).message}`,
    );
  }
  let set: ImageSet;
  if (await isImagenetC(root, folders)) {
    const strangers = folders.filter((f) => f !== 'clean' && !isCorruption(f));
    if (strangers.length)
      throw new ImageSetError(
        `${where} is in ImageNet-C's layout (DIR/<corruption>/<severity>/<class>/<image>), but ${strangers.join(', ')} ${strangers.length > 1 ? 'are' : 'is'} not a corruption: the corruptions are ${CORRUPTIONS.join(', ')} (and clean/ for clean images)`,
      );
    const corrupted = new Map<Corruption, Map<number, StudyImage[]>>();
    let classes: ClassMatch[] | undefined;
    const ignored: string[] = [];
    for (const corruption of folders.filter(isCorruption)) {
      const bySeverity = new Map<number, StudyImage[]>();
      const severities = await subdirectories(path.join(root, corruption));
      const wrong = severities.filter((s) => !SEVERITY_DIRS.includes(s));
      if (wrong.length)
        throw new ImageSetError(
          `${path.join(where, corruption)}: severity folders are 1..5, not ${wrong.join(', ')}`,
        );
      for (const severity of severities) {
        const read = await readFolder(root, path.join(root, corruption, severity), options, classes);
        classes = mergeClasses(classes, read.classes);
        ignored.push(...read.ignored);
        bySeverity.set(Number(severity), read.images);
      }
      corrupted.set(corruption, bySeverity);
    }
    const clean = folders.includes('clean')
      ? await readFolder(root, path.join(root, 'clean'), options, classes)
      : undefined;
    if (clean) ignored.push(...clean.ignored);
    set = {
      layout: 'imagenet-c',
      root,
      clean: clean?.images ?? [],
      corrupted,
      classes: mergeClasses(classes, clean?.classes ?? []),
      ignored,
    };
  } else {
    const read = await readFolder(root, root, options);
    set = { layout: 'imagefolder', root, clean: read.images, classes: read.classes, ignored: read.ignored };
  }
  const count =
    set.clean.length +
    [...(set.corrupted?.values() ?? [])].reduce(
      (n, m) => n + [...m.values()].reduce((k, xs) => k + xs.length, 0),
      0,
    );
  if (count === 0)
    throw new ImageSetError(
      `--images ${where}: no images (files ending ${[...IMAGE_EXTENSIONS].join(', ')})${set.ignored.length ? `; ${set.ignored.length} other files, e.g. ${set.ignored[0]}` : ''}`,
    );
  return set;
}

function mergeClasses(a: readonly ClassMatch[] | undefined, b: readonly ClassMatch[]): ClassMatch[] {
  const out = [...(a ?? [])];
  for (const c of b) if (!out.some((x) => x.folder === c.folder)) out.push(c);
  return out;
}

/** Fashion-MNIST as an image set: `perClass` images of each class from [from, to) of the split. */
async function readFashion(options: ReadOptions): Promise<ImageSet> {
  const { split, from = 0, to, part } = options.fashion ?? { split: 't10k' };
  const data = await loadFashion(split);
  const indices = fashionIndices(data, options.perClass, from, to ?? data.count, part);
  const size = data.width * data.height;
  const clean = indices.map((index): StudyImage => ({
    id: `${FASHION_MNIST}/${split}/${index}`,
    label: data.labels[index]!,
    source: {
      pixels: data.images.subarray(index * size, (index + 1) * size),
      width: data.width,
      height: data.height,
    },
  }));
  const classes = Array.from({ length: 10 }, (_, label) => ({
    folder: String(label),
    label,
    by: 'index' as const,
  }));
  return { layout: 'fashion-mnist', root: FASHION_MNIST, clean, classes, ignored: [] };
}

/**
 * The first `perClass` images of each class in [from, to), within `part` of the test set when
 * one is named: a fixed, reproducible subset.
 */
export function fashionIndices(
  data: Dataset,
  perClass: number | undefined,
  from: number,
  to: number,
  part?: FashionPart,
): number[] {
  const seen = new Map<number, number>();
  const taken = new Map<number, number>();
  const out: number[] = [];
  for (let k = from; k < to; k++) {
    const label = data.labels[k]!;
    const rank = seen.get(label) ?? 0;
    seen.set(label, rank + 1);
    if (part !== undefined && rank < FASHION_PART_SIZE !== (part === 'dev')) continue;
    const n = taken.get(label) ?? 0;
    if (perClass !== undefined && n >= perClass) continue;
    taken.set(label, n + 1);
    out.push(k);
  }
  return out;
}
