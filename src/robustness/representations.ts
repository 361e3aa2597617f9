/**
 * Do the dynamics pull a noisy image's representations towards the clean image's? For each
 * PCoder and timestep: the correlation distance (1 - Pearson r) between the representation of
 * the noisy version and that of the clean version at the same timestep, and that of the clean
 * version's feedforward pass (t = 0), averaged over images.
 */
import type { PredictiveStepper } from '../engine/predictive-step.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { newSample } from '../engine/predictive-step.js';
import type { StudyImage } from './image-set.js';
import { CLEAN, type Condition, type OpenImage, type StudyInputs } from './study-inputs.js';

export function correlationDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let k = 0; k < n; k++) {
    ma += a[k]!;
    mb += b[k]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let k = 0; k < n; k++) {
    const da = a[k]! - ma;
    const db = b[k]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return saa === sbb ? 0 : 1;
  return 1 - sab / Math.sqrt(saa * sbb);
}

export interface RepresentationDistances {
  /** [pcoder][t]: mean distance between noisy(t) and clean(t) */
  toCleanSameStep: number[][];
  /** [pcoder][t]: mean distance between noisy(t) and clean(0) */
  toCleanFeedforward: number[][];
}

export async function representationDistances(
  stepper: PredictiveStepper,
  inputs: StudyInputs,
  images: readonly StudyImage[],
  options: {
    noise: Condition;
    timesteps: number;
    batch: number;
    coefficients?: readonly Coefficients[];
  },
): Promise<RepresentationDistances> {
  const { noise, timesteps, batch, coefficients } = options;
  const n = stepper.pcoderCount;
  const zeros = () => Array.from({ length: n }, () => new Array<number>(timesteps + 1).fill(0));
  const same = zeros();
  const feedforward = zeros();
  let count = 0;
  for (let start = 0; start < images.length; start += batch) {
    const opened = (await Promise.all(images.slice(start, start + batch).map((i) => inputs.open(i)))).filter(
      (o): o is OpenImage => o !== undefined,
    );
    count += opened.length;
    const clean = (await inputs.inputs(opened, CLEAN)).map((x) => newSample(x, coefficients, timesteps));
    const noisy = (await inputs.inputs(opened, noise)).map((x) => newSample(x, coefficients, timesteps));
    let cleanAtZero: Float32Array[][] = [];
    for (let t = 0; t <= timesteps; t++) {
      await stepper.step([...clean, ...noisy]);
      // r_i lives in buffers the next step reuses: read (or copy) it now.
      if (t === 0) cleanAtZero = clean.map((s) => s.r.map((r) => r.slice()));
      for (let i = 0; i < n; i++)
        opened.forEach((_, b) => {
          same[i]![t]! += correlationDistance(noisy[b]!.r[i]!, clean[b]!.r[i]!);
          feedforward[i]![t]! += correlationDistance(noisy[b]!.r[i]!, cleanAtZero[b]![i]!);
        });
    }
  }
  const mean = (m: number[][]) => m.map((row) => row.map((v) => v / count));
  return { toCleanSameStep: mean(same), toCleanFeedforward: mean(feedforward) };
}
