/**
 * The batch size an engine steps at, chosen by measuring it (BATCH_MAX_SIZE=auto).
 *
 * The best size depends on the model, the machine (caches, cores) and the provider: a GPU
 * wants large batches, PVGG16 on two CPU cores small ones, and a fixed default is wrong
 * somewhere. So when an engine has loaded its model, it times its own timesteps on synthetic
 * images at 1, 2, 4, ... up to TUNING.maxSize samples, through the same stepper, graphs,
 * threads and provider that will serve, and keeps the largest size within TUNING.tolerance of
 * the best sample-steps/s. Among sizes of the same throughput the largest loses nothing (with
 * as many clients, the same throughput means the same mean latency) and leaves continuous
 * batching room to admit: a cap below the load let long requests hold every slot and short
 * ones queue behind them (BENCHMARKS.md, section 4: with the smallest such size, 16, short
 * requests' p99 was 4.2 times what it is at 32). The sizes below the choice on the curve's
 * plateau are handed to the scheduler too (plateauOf): a batch that fills one of them with
 * every request in hand runs several timesteps a call, as a full batch does. Measuring
 * stops at the start-up budget, or once throughput has clearly passed its peak. A curve
 * recorded in the manifest by `npm run tune` for the same provider and machine is used
 * without measuring.
 */
import { availableParallelism } from 'node:os';
import type { BatchTuning } from '../model/manifest.js';
import { newSample, type PredictiveStepper } from './predictive-step.js';

export const TUNING = {
  /** the largest size tried */
  maxSize: 64,
  /**
   * sizes within this fraction of the best throughput count as equal; the largest wins. On two
   * shared cores one size's start-up measurement varies by 10-15% from start to start
   * (BENCHMARKS.md §8): sizes closer than that cannot be told apart, and a cap chosen too small
   * by chance costs more (admission) than one a few percent slower per call.
   */
  tolerance: 0.1,
  /** each size is timed over at least this long, after a call that is not timed */
  minMs: 100,
} as const;

export interface BatchPoint {
  size: number;
  sampleStepsPerSecond: number;
}

export interface BatchChoice {
  size: number;
  /** fixed: BATCH_MAX_SIZE is a number; measured at start-up; recorded by `npm run tune` */
  source: 'fixed' | 'measured' | 'recorded';
  /** throughput by size, as measured or recorded (empty when fixed) */
  curve: BatchPoint[];
  /** why measuring stopped before TUNING.maxSize, when it did */
  stoppedAt?: 'budget' | 'past the peak';
  /** how long measuring took */
  ms?: number;
}

/** The largest size whose throughput is within `tolerance` of the best. */
export function pickSize(curve: readonly BatchPoint[], tolerance: number = TUNING.tolerance): number {
  if (curve.length === 0) throw new Error('no batch size was measured');
  return Math.max(...asFastAsTheBest(curve, tolerance));
}

/** The sizes whose throughput is within `tolerance` of the best. */
function asFastAsTheBest(curve: readonly BatchPoint[], tolerance: number): number[] {
  const best = Math.max(...curve.map((p) => p.sampleStepsPerSecond));
  return curve.filter((p) => p.sampleStepsPerSecond >= (1 - tolerance) * best).map((p) => p.size);
}

/**
 * The sizes that run about as efficiently as the chosen one: from the smallest within
 * `tolerance` of the best up to the choice (its plateau; a dip between them is noise). Empty
 * for a fixed size. The scheduler counts a batch of one of these as full when no more
 * requests are in hand (SchedulerOptions.efficientSizes).
 */
export function plateauOf(choice: BatchChoice, tolerance: number = TUNING.tolerance): number[] {
  if (choice.source === 'fixed' || choice.curve.length === 0) return [];
  const from = Math.min(...asFastAsTheBest(choice.curve, tolerance));
  return choice.curve
    .map((p) => p.size)
    .filter((size) => size >= from && size < choice.size)
    .sort((a, b) => a - b);
}

export interface MeasureOptions {
  maxSize?: number;
  budgetMs: number;
  now?: () => number;
  /** stop once throughput has clearly fallen for two sizes (default); false: every size */
  stopPastPeak?: boolean;
}

/**
 * Throughput at 1, 2, 4, ... sizes, in order, then once more each, largest first, while the
 * budget lasts (the better of the two counts: a machine's noise only ever slows a measurement
 * down). Size 1 is always measured; a larger one only if the time it is expected to take
 * (twice the last size's) still fits in the budget, and while the last two sizes have not
 * both fallen well (15%) below the best.
 */
export async function measureCurve(
  measure: (size: number) => Promise<number>,
  { maxSize = TUNING.maxSize, budgetMs, now = () => performance.now(), stopPastPeak = true }: MeasureOptions,
): Promise<Pick<BatchChoice, 'curve' | 'stoppedAt' | 'ms'>> {
  const started = now();
  const curve: BatchPoint[] = [];
  const took = new Map<number, number>();
  let stoppedAt: BatchChoice['stoppedAt'];
  let falling = 0;
  for (let size = 1; size <= maxSize; size *= 2) {
    const last = took.get(size / 2) ?? 0;
    if (curve.length > 0 && now() - started + 2 * last > budgetMs) {
      stoppedAt = 'budget';
      break;
    }
    const before = now();
    const rate = await measure(size);
    took.set(size, now() - before);
    curve.push({ size, sampleStepsPerSecond: rate });
    const best = Math.max(...curve.map((p) => p.sampleStepsPerSecond));
    falling = rate < 0.85 * best ? falling + 1 : 0;
    if (stopPastPeak && falling >= 2) {
      stoppedAt = 'past the peak';
      break;
    }
  }
  // The second pass runs largest first: a slow spell of the machine then falls on other sizes
  // than in the first, rather than on the same neighbours twice.
  for (const point of [...curve].reverse()) {
    if (now() - started + took.get(point.size)! > budgetMs) continue;
    point.sampleStepsPerSecond = Math.max(point.sampleStepsPerSecond, await measure(point.size));
  }
  return { curve, ...(stoppedAt ? { stoppedAt } : {}), ms: now() - started };
}

/**
 * Sample-steps per second of `stepper` at `size` samples, `k` timesteps per call (1: as
 * continuous batching runs them; a full batch of fixed-T requests takes up to
 * ENGINE_STEPS_PER_CALL), after untimed calls that size the sessions' buffers for this batch
 * and warm the thread pool up.
 */
export async function stepperThroughput(
  stepper: Pick<PredictiveStepper, 'inputSize' | 'step' | 'steps' | 'maxStepsPerCall'>,
  size: number,
  minMs: number,
  k = 1,
): Promise<number> {
  const perCall = Math.max(1, Math.min(k, stepper.maxStepsPerCall));
  // A fixed pseudo-random image: what the numbers are does not matter, only that they are not
  // all zero (which some kernels could shortcut).
  const image = new Float32Array(stepper.inputSize);
  let seed = 12345;
  for (let i = 0; i < image.length; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    image[i] = seed / 2 ** 31 - 0.5;
  }
  const samples = Array.from({ length: size }, () => newSample(image, undefined, 1_000_000));
  await stepper.step(samples);
  await stepper.steps(samples, perCall);
  let steps = 0;
  const started = performance.now();
  do {
    await stepper.steps(samples, perCall);
    steps += perCall;
  } while (performance.now() - started < minMs);
  return (steps * size) / ((performance.now() - started) / 1000);
}

/** What identifies the machine a curve was measured on, for a recorded curve to apply. */
export const machineKey = (threads: number) => ({ cpus: availableParallelism(), threads });

/**
 * What `npm run tune --write` records for a provider in the manifest's batchTuning: the choice,
 * the curve and the machine, read back by recordedChoice().
 */
export function tuningRecord(size: number, curve: readonly BatchPoint[], threads: number) {
  return {
    size,
    curve: curve.map((p) => ({
      size: p.size,
      sampleStepsPerSecond: Number(p.sampleStepsPerSecond.toFixed(1)),
    })),
    ...machineKey(threads),
    measuredAt: new Date().toISOString(),
  };
}

/** A curve `npm run tune` recorded for this provider on a machine like this one, if any. */
export function recordedChoice(
  tuning: BatchTuning | undefined,
  provider: string,
  threads: number,
): BatchChoice | undefined {
  const record = tuning?.[provider];
  const here = machineKey(threads);
  if (!record || record.cpus !== here.cpus || record.threads !== here.threads) return undefined;
  return { size: record.size, source: 'recorded', curve: record.curve };
}

export interface ChooseOptions {
  maxBatch: number | 'auto';
  budgetMs: number;
  threads: number;
  provider: string;
  tuning?: BatchTuning | undefined;
  /** a choice made before: a restarted engine keeps its predecessor's */
  chosen?: BatchChoice | undefined;
  measure: (size: number) => Promise<number>;
}

/**
 * The batch size to serve with: one chosen before, else the fixed one, else a recorded
 * choice, else a measured one.
 */
export async function chooseBatch(options: ChooseOptions): Promise<BatchChoice> {
  if (options.chosen) return options.chosen;
  if (options.maxBatch !== 'auto') return { size: options.maxBatch, source: 'fixed', curve: [] };
  const recorded = recordedChoice(options.tuning, options.provider, options.threads);
  if (recorded) return recorded;
  const measured = await measureCurve(options.measure, { budgetMs: options.budgetMs });
  return { size: pickSize(measured.curve), source: 'measured', ...measured };
}
