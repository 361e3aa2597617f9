/**
 * Every change in accuracy a study reports, against t = 0, with its 95% paired bootstrap
 * interval over images: clean, each corruption, each family and the corrupted mean, at every t.
 * Paired: each replicate draws the images once and scores the same draw at t and at t = 0 (and,
 * for conditions made from the same images, the same draw for all of them), so the interval is
 * that of the change, not of two accuracies. A change whose interval holds 0 is not a gain.
 */
import { FAMILIES, FAMILY_OF, type Corruption } from './imagenet-c/index.js';
import { Random } from './imagenet-c/random.js';
import type { ConditionResult } from './evaluate.js';
import { quantileSorted, replicateCount, sameImageGroups } from './mce.js';

/** A change in accuracy, in points, and its 95% interval. */
export interface Change {
  change: number;
  interval95: [number, number];
}

export interface Changes {
  /** per t: clean accuracy at t less at t = 0 */
  clean?: Change[];
  corruptedMean: Change[];
  families: Record<string, Change[]>;
  corruptions: Record<string, Change[]>;
  replicates: number;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/**
 * The changes against t = 0 of `results` (each condition's answers per image, `rightAt`), as
 * the summary averages them: a corruption over its severities, a family and the corrupted mean
 * over their conditions, each condition counting once.
 */
export function changesAgainstZero(
  results: readonly ConditionResult[],
  replicates = 1000,
  seed = 2,
): Changes {
  return pairedChanges(results, undefined, replicates, seed);
}

/**
 * The changes of `results` against `reference` at the same t (another arm of the study: the same
 * conditions, the same images in the same order, e.g. a control), each with its 95% paired
 * bootstrap interval. At t = 0 both arms run the feedforward network alone, so a change there
 * says that the two arms do not share their images.
 */
export function changesBetween(
  results: readonly ConditionResult[],
  reference: readonly ConditionResult[],
  replicates = 1000,
  seed = 2,
): Changes {
  const key = (r: ConditionResult) => `${r.condition.corruption}/${r.condition.severity}`;
  const byCondition = new Map(reference.map((r) => [key(r), r]));
  for (const r of results) {
    const other = byCondition.get(key(r));
    if (!other || other.count !== r.count || other.accuracy.length !== r.accuracy.length)
      throw new Error(`changesBetween: the arms differ at ${key(r)}`);
  }
  return pairedChanges(results, (r) => byCondition.get(key(r))!, replicates, seed);
}

function pairedChanges(
  results: readonly ConditionResult[],
  referenceOf: ((r: ConditionResult) => ConditionResult) | undefined,
  replicates: number,
  seed: number,
): Changes {
  const T = results[0]?.accuracy.length ?? 0;
  const usable = results.filter((r) => r.count > 0 && r.rightAt && (!referenceOf || referenceOf(r).rightAt));
  const categories = new Map<string, ConditionResult[]>();
  const add = (name: string, r: ConditionResult) =>
    categories.set(name, [...(categories.get(name) ?? []), r]);
  for (const r of usable) {
    const c = r.condition.corruption;
    if (c === 'clean') {
      add('clean', r);
      continue;
    }
    add('corrupted', r);
    add(`corruption:${c}`, r);
    const family = FAMILY_OF[c as Corruption];
    if (family) add(`family:${family}`, r);
  }
  const groups = sameImageGroups(usable);
  /** Each condition's change at every t under image weights (all 1: the study itself). */
  const conditionChanges = (weightOf: (r: ConditionResult) => Uint32Array | undefined) => {
    const out = new Map<ConditionResult, Float64Array>();
    for (const r of usable) {
      const w = weightOf(r);
      const n = r.count;
      const diff = new Float64Array(T);
      const base = referenceOf?.(r).rightAt;
      for (let i = 0; i < n; i++) {
        const weight = w ? w[i]! : 1;
        if (weight === 0) continue;
        if (base)
          for (let t = 0; t < T; t++) diff[t]! += weight * (r.rightAt![i * T + t]! - base[i * T + t]!);
        else {
          const zero = r.rightAt![i * T]!;
          for (let t = 1; t < T; t++) diff[t]! += weight * (r.rightAt![i * T + t]! - zero);
        }
      }
      for (let t = 0; t < T; t++) diff[t]! /= n;
      out.set(r, diff);
    }
    return out;
  };
  const meanOver = (
    members: readonly ConditionResult[],
    changes: Map<ConditionResult, Float64Array>,
    t: number,
  ) => members.reduce((s, r) => s + changes.get(r)![t]!, 0) / members.length;

  const observed = conditionChanges(() => undefined);
  const b = usable.length ? replicateCount(usable, T, replicates) : 0;
  const rng = new Random(seed);
  const draws = new Map<string, number[][]>(
    [...categories.keys()].map((k) => [k, Array.from({ length: T }, () => [])]),
  );
  for (let k = 0; k < b; k++) {
    const weights = new Map<ConditionResult, Uint32Array>();
    for (const members of groups) {
      const n = members[0]!.count;
      const w = new Uint32Array(n);
      for (let i = 0; i < n; i++) w[rng.int(0, n)]!++;
      for (const r of members) weights.set(r, w);
    }
    const changes = conditionChanges((r) => weights.get(r));
    for (const [name, members] of categories)
      for (let t = 0; t < T; t++) draws.get(name)![t]!.push(meanOver(members, changes, t));
  }
  const series = (name: string): Change[] =>
    Array.from({ length: T }, (_, t) => {
      const xs = draws.get(name)![t]!.sort((a, c) => a - c);
      const at = (q: number) => (xs.length ? quantileSorted(xs, q) : NaN);
      return {
        change: r2(100 * meanOver(categories.get(name)!, observed, t)),
        interval95: [r2(100 * at(0.025)), r2(100 * at(0.975))],
      };
    });
  const families: Record<string, Change[]> = {};
  for (const f of FAMILIES) if (categories.has(`family:${f}`)) families[f] = series(`family:${f}`);
  const corruptions: Record<string, Change[]> = {};
  for (const name of categories.keys())
    if (name.startsWith('corruption:')) corruptions[name.slice('corruption:'.length)] = series(name);
  return {
    ...(categories.has('clean') ? { clean: series('clean') } : {}),
    corruptedMean: categories.has('corrupted') ? series('corrupted') : [],
    families,
    corruptions,
    replicates: b,
  };
}

/** "+1.20 points (95% +0.40 to +2.00): a gain" and the like, for reports. */
export function describeWithInterval(c: Change): string {
  const s = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  const [lo, hi] = c.interval95;
  const verdict = lo > 0 ? 'a gain' : hi < 0 ? 'a loss' : 'its interval holds 0: no change shown';
  return `${s(c.change)} points (95% ${s(lo)} to ${s(hi)}): ${verdict}`;
}
