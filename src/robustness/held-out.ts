/**
 * Which images a calibration read, kept beside the model, so that a study can refuse to score
 * a calibrated profile on them: a result on the images its settings were chosen on is not a
 * held-out result. Images are known by a digest of their file's bytes (renaming or copying a
 * file does not hide it), Fashion-MNIST's by their split and index.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StudyImage } from './image-set.js';

/** What the corruption score's normalisation was fitted on (the gate reads it). */
export const SCORE_RECORD = 'corruption-score';

const fileOf = (modelDir: string, name: string) => path.join(modelDir, 'calibration-images', `${name}.json`);

/**
 * The images that identify what a study reads: those it reads clean. Corrupted versions are
 * made from them (or, in ImageNet-C's layout, stand beside them under clean/), so hashing the
 * clean ones is enough, and spares hashing a release's millions of corrupted files.
 */
export function cleanImagesOf(
  groups: readonly { images: readonly StudyImage[]; conditions: readonly { corruption: string }[] }[],
): StudyImage[] {
  return groups.filter((g) => g.conditions.some((c) => c.corruption === 'clean')).flatMap((g) => g.images);
}

/** Each distinct image's digest, in the order first met. */
export async function digestsOf(images: Iterable<StudyImage>): Promise<string[]> {
  const seen = new Set<string>();
  for (const image of images) {
    const { source } = image;
    const digest =
      'file' in source
        ? createHash('sha256')
            .update(await readFile(source.file))
            .digest('hex')
            .slice(0, 32)
        : image.id;
    seen.add(digest);
  }
  return [...seen];
}

/** Records the images a calibration of `name` (a profile, or SCORE_RECORD) read. */
export async function recordCalibrationImages(
  modelDir: string,
  name: string,
  digests: readonly string[],
): Promise<string> {
  const file = fileOf(modelDir, name);
  await mkdir(path.dirname(file), { recursive: true });
  const body = {
    name,
    count: digests.length,
    digest: 'sha256 of the file, first 32 hex digits; Fashion-MNIST: split/index',
    images: digests,
  };
  await writeFile(`${file}.partial`, `${JSON.stringify(body)}\n`);
  await rename(`${file}.partial`, file);
  return path.relative(modelDir, file);
}

/** The images recorded for `names`, together; empty when none was recorded. */
export async function calibrationImages(modelDir: string, names: readonly string[]): Promise<Set<string>> {
  const all = new Set<string>();
  for (const name of names) {
    let text: string;
    try {
      text = await readFile(fileOf(modelDir, name), 'utf8');
    } catch {
      continue;
    }
    for (const d of (JSON.parse(text) as { images: string[] }).images) all.add(d);
  }
  return all;
}
