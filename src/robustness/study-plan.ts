/**
 * A study's plan: which images, which corruptions and severities, how many timesteps, made
 * from the options every study shares (eval, calibrate, eval:signal, eval:representations) so
 * that each means the same everywhere. A bad choice is refused here, before any work, with an
 * ImageSetError that names it.
 */
import type { Manifest } from '../model/manifest.js';
import {
  FASHION_MNIST,
  ImageSetError,
  readClassMap,
  readImageSet,
  type FashionPart,
  type ImageSet,
  type ReadOptions,
} from './image-set.js';
import { CORRUPTIONS, parseCorruptions, parseSeverities, type Corruption } from './imagenet-c/index.js';
import { CLEAN, type Condition, type StudyGroup } from './evaluate.js';

/** The shared study options as a command line gives them (strings, as typed). */
export interface StudyValues {
  images?: string;
  'class-map'?: string;
  corruptions?: string;
  severities?: string;
  timesteps?: string;
  out?: string;
  'per-class'?: string;
  'clean-per-class'?: string;
  'skip-unreadable'?: boolean;
  seed?: string;
}

export interface StudyDefaults {
  corruptions: string;
  severities: string;
  timesteps: number;
  /** for Fashion-MNIST only: its split and range, and images per class */
  fashion: {
    split: 'train' | 't10k';
    from?: number;
    to?: number;
    part?: FashionPart;
    perClass: number;
    cleanPerClass: number;
  };
}

export interface StudyChoice {
  set: ImageSet;
  corruptions: Corruption[];
  severities: number[];
  timesteps: number;
  seed: number;
  skipUnreadable: boolean;
  /** groups of images and conditions: the clean condition first */
  groups: StudyGroup[];
  /** the conditions, clean first */
  conditions: Condition[];
  describe: string;
}

/** Whether a model can be studied on Fashion-MNIST as it is: 28 x 28 grey, 10 classes. */
export const takesFashion = (m: Manifest) =>
  m.input.width === 28 && m.input.height === 28 && m.input.channels === 1 && m.labels.length === 10;

function whole(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new ImageSetError(`--${name} must be a whole number, got '${value}'`);
  return Number(value);
}

/**
 * Reads the study's images and plans it. Throws ImageSetError (a usage problem, exit 2) for
 * anything that would make the study fail later.
 */
export async function planStudy(
  values: StudyValues,
  manifest: Manifest,
  defaults: StudyDefaults,
): Promise<StudyChoice> {
  const where = values.images ?? (takesFashion(manifest) ? FASHION_MNIST : undefined);
  if (where === undefined)
    throw new ImageSetError(
      `name the images to study with --images DIR (model ${manifest.name} takes ${manifest.input.width} x ${manifest.input.height} x ${manifest.input.channels}; only a 28 x 28 grey model defaults to ${FASHION_MNIST})`,
    );
  let corruptions: Corruption[];
  let severities: number[];
  try {
    corruptions = parseCorruptions(values.corruptions ?? defaults.corruptions);
    severities = parseSeverities(values.severities ?? defaults.severities);
  } catch (err) {
    throw new ImageSetError((err as Error).message);
  }
  const timesteps = whole('timesteps', values.timesteps) ?? defaults.timesteps;
  const seed = whole('seed', values.seed) ?? 0;
  const fashion = where === FASHION_MNIST;
  const perClass =
    whole('per-class', values['per-class']) ?? (fashion ? defaults.fashion.perClass : undefined);
  const cleanPerClass = Math.max(
    perClass ?? 0,
    whole('clean-per-class', values['clean-per-class']) ??
      (fashion ? defaults.fashion.cleanPerClass : (perClass ?? Infinity)),
  );
  if (fashion && !takesFashion(manifest))
    throw new ImageSetError(
      `model ${manifest.name} does not take Fashion-MNIST's 28 x 28 grey images: name its images with --images DIR`,
    );
  const options: ReadOptions = {
    labels: manifest.labels,
    ...(values['class-map'] ? { classMap: await readClassMap(values['class-map']) } : {}),
    ...(Number.isFinite(cleanPerClass) ? { perClass: cleanPerClass } : {}),
    ...(fashion ? { fashion: defaults.fashion } : {}),
  };
  const set = await readImageSet(where, options);
  const generated = corruptions.flatMap((corruption) =>
    severities.map((severity): Condition => ({ corruption, severity })),
  );
  const groups: StudyGroup[] = [];
  let conditions: Condition[];
  if (set.layout === 'imagenet-c') {
    const held = set.corrupted!;
    const explicit = values.corruptions !== undefined || values.severities !== undefined;
    const wanted = explicit
      ? generated
      : generated.filter((c) => held.get(c.corruption as Corruption)?.has(c.severity));
    const missing = wanted.filter((c) => !held.get(c.corruption as Corruption)?.has(c.severity));
    if (missing.length)
      throw new ImageSetError(
        `${where} holds no images for ${missing.map((c) => `${c.corruption}/${c.severity}`).join(', ')} (it holds ${[...held.entries()].map(([c, s]) => `${c}/${[...s.keys()].join(',')}`).join('; ')})`,
      );
    if (set.clean.length) groups.push({ images: set.clean, conditions: [CLEAN], asIs: true });
    for (const c of wanted) {
      const images = held.get(c.corruption as Corruption)!.get(c.severity)!;
      groups.push({
        images: perClass !== undefined ? firstPerClass(images, perClass) : images,
        conditions: [c],
        asIs: true,
      });
    }
    conditions = [...(set.clean.length ? [CLEAN] : []), ...wanted];
    corruptions = CORRUPTIONS.filter((c) => wanted.some((w) => w.corruption === c));
  } else {
    const studied = perClass !== undefined ? firstPerClass(set.clean, perClass) : set.clean;
    const inStudied = new Set(studied);
    const moreClean = set.clean.filter((i) => !inStudied.has(i));
    groups.push({ images: studied, conditions: [CLEAN, ...generated] });
    if (moreClean.length) groups.push({ images: moreClean, conditions: [CLEAN] });
    conditions = [CLEAN, ...generated];
  }
  const { split, part } = defaults.fashion;
  const describe = describeStudy(
    set,
    groups,
    conditions,
    corruptions.length,
    part ? `${split} (${part} part)` : split,
  );
  return {
    set,
    corruptions,
    severities,
    timesteps,
    seed,
    skipUnreadable: values['skip-unreadable'] ?? false,
    groups,
    conditions,
    describe,
  };
}

/**
 * What a study reads, in a line: the set, its classes, the images per condition and the
 * conditions, counted from the groups themselves (so a half says its own sizes).
 */
export function describeStudy(
  set: StudyChoice['set'],
  groups: StudyChoice['groups'],
  conditions: StudyChoice['conditions'],
  corruptions: number,
  fashionSplit: string,
): string {
  const cleanCount = groups
    .filter((g) => g.conditions.includes(CLEAN))
    .reduce((n, g) => n + g.images.length, 0);
  const corruptedCount =
    set.layout === 'imagenet-c'
      ? groups.filter((g) => !g.conditions.includes(CLEAN)).reduce((n, g) => Math.max(n, g.images.length), 0)
      : groups[0]!.images.length;
  return (
    `${set.layout === 'fashion-mnist' ? `Fashion-MNIST ${fashionSplit}` : `${set.root} (${set.layout === 'imagenet-c' ? "ImageNet-C's layout" : 'ImageFolder'})`}: ` +
    `${set.classes.length} classes; ${corruptedCount} images per corruption condition, ${cleanCount} clean; ` +
    `${conditions.length - (conditions[0] === CLEAN ? 1 : 0)} corruption conditions (${corruptions} corruptions)`
  );
}

/** The first `n` images of each label, in the set's order (by file name). */
export function firstPerClass<T extends { label: number }>(images: readonly T[], n: number): T[] {
  const taken = new Map<number, number>();
  return images.filter((i) => {
    const k = taken.get(i.label) ?? 0;
    taken.set(i.label, k + 1);
    return k < n;
  });
}
