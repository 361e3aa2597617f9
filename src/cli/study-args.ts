/**
 * The command line every study shares (eval, calibrate, eval:signal, eval:representations):
 * its options and their help, and the opening every study makes with them: the plan
 * (robustness/study-plan.ts) and the inputs that read its images. A refusal exits 2 here.
 */
import type { ParseArgsConfig } from 'node:util';
import type { Manifest } from '../model/manifest.js';
import { FASHION_MNIST, ImageSetError } from '../robustness/image-set.js';
import {
  planStudy,
  type StudyChoice,
  type StudyDefaults,
  type StudyValues,
} from '../robustness/study-plan.js';
import { StudyInputs } from '../robustness/study-inputs.js';

export type { StudyValues };

export const STUDY_OPTIONS = {
  images: { type: 'string' },
  'class-map': { type: 'string' },
  corruptions: { type: 'string' },
  severities: { type: 'string' },
  timesteps: { type: 'string' },
  out: { type: 'string' },
  'per-class': { type: 'string' },
  'clean-per-class': { type: 'string' },
  'skip-unreadable': { type: 'boolean', default: false },
  seed: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const STUDY_USAGE = `  --images DIR   the images: an ImageFolder (DIR/<class>/<image>), ImageNet-C's layout
                 (DIR/<corruption>/<severity>/<class>/<image>, optionally DIR/clean/<class>/<image>)
                 or ${FASHION_MNIST} (Debian's package: the default for a 28 x 28 grey, 10-class model)
  --class-map FILE  folder name -> label or index: JSON ({"n01440764": 0, ...} or ImageNet's
                 class index), or CSV lines folder,label (default: folders named as the labels)
  --corruptions  all, benchmark (ImageNet-C's 15), validation (its 4), a family (noise, blur,
                 weather, digital) or names, comma-separated
  --severities   1..5, as a list or a range, e.g. 1,3,5 or 1-5
  --timesteps T  accuracy is measured at t = 0..T
  --per-class N  images of each class under the corruptions, the first by file name
  --clean-per-class N  images of each class for the clean condition (at least --per-class)
  --skip-unreadable  go on past images that cannot be decoded, counting and listing them
  --seed N       varies every random corruption (default 0)
  --out DIR      where the results go`;

/** Plans the study or exits 2 with the refusal and the usage; and the inputs that read its images. */
export async function openStudy(
  values: StudyValues,
  manifest: Manifest,
  defaults: StudyDefaults,
  usage: string,
): Promise<{ study: StudyChoice; inputs: StudyInputs }> {
  const study = await planStudyOrExit(values, manifest, defaults, usage);
  return {
    study,
    inputs: new StudyInputs(manifest.input, { skipUnreadable: study.skipUnreadable, seed: study.seed }),
  };
}

/** planStudy() for a command line: a refusal is printed with the usage and exits 2. */
export async function planStudyOrExit(
  values: StudyValues,
  manifest: Manifest,
  defaults: StudyDefaults,
  usage: string,
): Promise<StudyChoice> {
  try {
    return await planStudy(values, manifest, defaults);
  } catch (err) {
    if (!(err instanceof ImageSetError)) throw err;
    console.error(`${err.message}\n\n${usage}`);
    process.exit(2);
  }
}
