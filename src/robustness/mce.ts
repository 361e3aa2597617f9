/**
 * Corruption error as ImageNet-C and the Predify paper report it. For a corruption c at
 * timestep t, CE_c(t) is the error summed over its severities; mCE(t) averages CE_c(t) over the
 * benchmark corruptions studied. The paper reports mCE(t) / mCE(0): below 1, the dynamics
 * help. ImageNet-C reports mCE normalised by a baseline network's CE (AlexNet's, in %).
 */
import { BENCHMARK_CORRUPTIONS, type Corruption } from './imagenet-c/index.js';
import { Random } from './imagenet-c/random.js';
import type { ConditionResult } from './evaluate.js';
import { ADDITIVE_GAUSSIAN } from './study-inputs.js';

/**
 * AlexNet's error on ImageNet-C, each averaged over the 5 severities, as ImageNet-C's authors
 * publish them (hendrycks/robustness): the baseline of its normalised mCE.
 */
export const ALEXNET_ERRORS: Readonly<Record<(typeof BENCHMARK_CORRUPTIONS)[number], number>> = {
  gaussian_noise: 0.886428,
  shot_noise: 0.894468,
  impulse_noise: 0.92264,
  defocus_blur: 0.81988,
  glass_blur: 0.826268,
  motion_blur: 0.785948,
  zoom_blur: 0.79836,
  snow: 0.866816,
  frost: 0.826572,
  fog: 0.819324,
  brightness: 0.564592,
  contrast: 0.853204,
  elastic_transform: 0.646056,
  pixelate: 0.71784,
  jpeg_compression: 0.6065,
};

const isBenchmark = (c: string): c is (typeof BENCHMARK_CORRUPTIONS)[number] =>
  (BENCHMARK_CORRUPTIONS as readonly string[]).includes(c);

/** CE_c(t) for every corruption studied: the error summed over its severities. */
export function corruptionErrors(results: readonly ConditionResult[]): Map<Corruption, number[]> {
  const out = new Map<Corruption, number[]>();
  for (const r of results) {
    if (r.condition.corruption === 'clean' || r.condition.corruption === ADDITIVE_GAUSSIAN) continue;
    const ce = out.get(r.condition.corruption) ?? r.accuracy.map(() => 0);
    out.set(
      r.condition.corruption,
      ce.map((e, t) => e + 1 - r.accuracy[t]!),
    );
  }
  return out;
}

/**
 * Which corruptions an mCE averages: ImageNet-C's 15 benchmark corruptions (Hendrycks and
 * Dietterich's definition), or every one studied, the 4 validation corruptions included (what
 * the Predify paper's scripts average: 19).
 */
export type MceOver = 'benchmark' | 'all';

const counts = (c: string, over: MceOver) => c !== 'clean' && (over === 'all' || isBenchmark(c));

/** mCE(t) over the benchmark corruptions (or all) among `results` (NaN for none). */
export function meanCorruptionError(
  results: readonly ConditionResult[],
  over: MceOver = 'benchmark',
): number[] {
  const ces = [...corruptionErrors(results).entries()].filter(([c]) => counts(c, over)).map(([, ce]) => ce);
  const T = results[0]?.accuracy.length ?? 0;
  return Array.from({ length: T }, (_, t) =>
    ces.length ? ces.reduce((s, ce) => s + ce[t]!, 0) / ces.length : NaN,
  );
}

/** Which benchmark corruptions an mCE covers. */
export const benchmarkCovered = (results: readonly ConditionResult[]) =>
  [...corruptionErrors(results).keys()].filter(isBenchmark);

export interface RelativeMce {
  /** mCE(t) / mCE(0) */
  relative: number[];
  /** its 95% bootstrap interval, [low, high] per t */
  interval95: [number, number][];
  replicates: number;
}

/**
 * mCE(t) / mCE(0) with a percentile bootstrap over images: each replicate draws the images
 * again with replacement (the same draw for every condition that holds the same images, so
 * that corruptions of one image move together, as they do), recomputes every condition's
 * accuracy at every t from the recorded answers, and the ratio from those. The paper drew
 * corruptions, not images; drawing images measures what more images would change.
 */
export function relativeMce(
  results: readonly ConditionResult[],
  replicates = 1000,
  seed = 1,
  over: MceOver = 'benchmark',
): RelativeMce {
  const benchmark = results.filter((r) => counts(r.condition.corruption, over));
  const mce = meanCorruptionError(benchmark, over);
  const relative = mce.map((m) => m / mce[0]!);
  const T = relative.length;
  if (benchmark.length === 0 || benchmark.some((r) => !r.rightAt))
    return { relative, interval95: relative.map(() => [NaN, NaN]), replicates: 0 };
  const groups = sameImageGroups(benchmark);
  const b = replicateCount(benchmark, T, replicates);
  const rng = new Random(seed);
  const ratios: number[][] = Array.from({ length: T }, () => []);
  const corruptionsCount = new Set(benchmark.map((r) => r.condition.corruption)).size;
  for (let k = 0; k < b; k++) {
    const errorSum = new Float64Array(T);
    for (const members of groups) {
      const n = members[0]!.count;
      const weight = new Uint32Array(n);
      for (let i = 0; i < n; i++) weight[rng.int(0, n)]!++;
      for (const r of members) {
        const right = new Float64Array(T);
        for (let i = 0; i < n; i++) {
          const w = weight[i]!;
          if (w === 0) continue;
          for (let t = 0; t < T; t++) right[t]! += w * r.rightAt![i * T + t]!;
        }
        for (let t = 0; t < T; t++) errorSum[t]! += 1 - right[t]! / n;
      }
    }
    for (let t = 0; t < T; t++)
      ratios[t]!.push(errorSum[t]! / corruptionsCount / (errorSum[0]! / corruptionsCount));
  }
  const interval95 = ratios.map((xs): [number, number] => {
    xs.sort((a, c) => a - c);
    return [quantileSorted(xs, 0.025), quantileSorted(xs, 0.975)];
  });
  return { relative, interval95, replicates: b };
}

/** Conditions over the same images (by id, in order): they share their bootstrap draws. */
export function sameImageGroups(results: readonly ConditionResult[]): ConditionResult[][] {
  const groups = new Map<string, ConditionResult[]>();
  for (const r of results) {
    const key = `${r.count}:${r.ids?.[0] ?? ''}:${r.ids?.at(-1) ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()];
}

/** Fewer replicates when each would be slow: an interval's ends settle by a few hundred. */
export function replicateCount(results: readonly ConditionResult[], T: number, wanted: number): number {
  const work = results.reduce((n, r) => n + r.count, 0) * T;
  return Math.max(200, Math.min(wanted, Math.floor(2e9 / Math.max(1, work))));
}

/** The q-quantile of sorted values, interpolated between neighbours. */
export function quantileSorted(xs: readonly number[], q: number): number {
  const at = q * (xs.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(xs.length - 1, lo + 1);
  return xs[lo]! + (xs[hi]! - xs[lo]!) * (at - lo);
}

/** A baseline's error per benchmark corruption, averaged over the 5 severities. */
export type BaselineErrors = Partial<Record<Corruption, number>>;

export interface NormalisedMce {
  /** mean over the benchmark corruptions of CE_c(t) / CE_c(baseline), in % */
  mce: number[];
  /** the same per corruption */
  corruptions: Partial<Record<Corruption, number[]>>;
  /** corruptions left out: not studied at all 5 severities, or the baseline lacks them */
  missing: string[];
}

/**
 * ImageNet-C's normalised mCE at every t against a baseline (ALEXNET_ERRORS or another
 * study's t = 0 errors): only corruptions studied at all 5 severities count, since the
 * baseline's errors average all 5.
 */
export function normalisedMce(results: readonly ConditionResult[], baseline: BaselineErrors): NormalisedMce {
  const severities = new Map<Corruption, number>();
  for (const r of results)
    if (r.condition.corruption !== 'clean' && r.condition.corruption !== ADDITIVE_GAUSSIAN)
      severities.set(r.condition.corruption, (severities.get(r.condition.corruption) ?? 0) + 1);
  const corruptions: NormalisedMce['corruptions'] = {};
  const missing: string[] = [];
  for (const [c, ce] of corruptionErrors(results)) {
    if (!isBenchmark(c)) continue;
    const base = baseline[c];
    if (severities.get(c) !== 5 || base === undefined || !(base > 0)) {
      missing.push(c);
      continue;
    }
    corruptions[c] = ce.map((e) => (100 * e) / (5 * base));
  }
  const values = Object.values(corruptions);
  const T = results[0]?.accuracy.length ?? 0;
  const mce = Array.from({ length: T }, (_, t) =>
    values.length ? values.reduce((s, v) => s + v[t]!, 0) / values.length : NaN,
  );
  for (const c of BENCHMARK_CORRUPTIONS) if (!severities.has(c) && !missing.includes(c)) missing.push(c);
  return { mce, corruptions, missing };
}

/** Another study's results.json as a baseline: its error at t = 0 per corruption, averaged over severities. */
export function baselineFromResults(json: unknown, where: string): BaselineErrors {
  const corruptions = (json as { corruptions?: Record<string, Record<string, { accuracy?: number[] }>> })
    ?.corruptions;
  if (!corruptions || typeof corruptions !== 'object')
    throw new Error(`${where}: not a study's results.json (it has no 'corruptions')`);
  const out: BaselineErrors = {};
  for (const [c, bySeverity] of Object.entries(corruptions)) {
    if (!isBenchmark(c)) continue;
    const errors = Object.values(bySeverity)
      .map((s) => s.accuracy?.[0])
      .filter((a): a is number => typeof a === 'number')
      .map((a) => 1 - a);
    if (errors.length === 5) out[c] = errors.reduce((a, b) => a + b, 0) / 5;
  }
  if (Object.keys(out).length === 0)
    throw new Error(`${where}: no benchmark corruption with all 5 severities`);
  return out;
}
