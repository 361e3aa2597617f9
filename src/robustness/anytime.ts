/**
 * Anytime answers measured: the engine's settling rule (src/engine/settling.ts) replayed on
 * recorded trajectories, so that one computation of every image's dynamics up to the cap
 * answers for any rule. A replay stops where the engine would, with the same answer.
 */
import type { ScoreNormalisation } from '../engine/corruption-score.js';
import { stoppingPoint, type SettleRule } from '../engine/settling.js';
import { conditionName, type ConditionResult, type Trajectory } from './evaluate.js';
import { mean } from './report.js';

export interface Replay {
  count: number;
  correct: number;
  accuracy: number;
  /** timesteps computed after t = 0, averaged over the images */
  meanTimesteps: number;
  /** the share of images that settled before the cap */
  settled: number;
}

export function replay(trajectories: readonly Trajectory[], rule: SettleRule, cap: number): Replay {
  let correct = 0;
  let steps = 0;
  let settled = 0;
  for (const { label, steps: trajectory } of trajectories) {
    const stop = stoppingPoint(trajectory, rule, cap);
    if (trajectory[stop.t]!.top === label) correct++;
    steps += stop.t;
    if (stop.reason === 'settled') settled++;
  }
  const count = trajectories.length;
  return {
    count,
    correct,
    accuracy: correct / count,
    meanTimesteps: steps / count,
    settled: settled / count,
  };
}

/** The same measure for a fixed number of timesteps, on the same trajectories. */
export function fixed(trajectories: readonly Trajectory[], t: number): Replay {
  const correct = trajectories.filter((x) => x.steps[t]!.top === x.label).length;
  const count = trajectories.length;
  return { count, correct, accuracy: correct / count, meanTimesteps: t, settled: 0 };
}

/** The rules tried: each tolerance with each patience, without a confidence gate and with each. */
export const RULE_GRID: readonly SettleRule[] = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3].flatMap((tolerance) =>
  [1, 2, 3].flatMap((patience) =>
    [undefined, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95].map((confidence) =>
      confidence === undefined ? { tolerance, patience } : { tolerance, patience, confidence },
    ),
  ),
);

export const sameRule = (a: SettleRule, b: SettleRule) =>
  a.tolerance === b.tolerance &&
  a.patience === b.patience &&
  a.confidence === b.confidence &&
  a.gate?.above === b.gate?.above;

/** A rule as the manifest and reports hold it: the gate by its threshold alone. */
export const ruleRecord = ({ gate, ...rest }: SettleRule) => ({
  ...rest,
  ...(gate ? { gate: gate.above } : {}),
});

/**
 * The items no other beats at once on cost (lower) and on every gain (higher): the tradeoff's
 * front, which is what a report of many rules needs to list.
 */
export function undominated<T>(
  items: readonly T[],
  cost: (x: T) => number,
  gains: ((x: T) => number)[],
): T[] {
  const beats = (o: T, x: T) =>
    cost(o) <= cost(x) &&
    gains.every((g) => g(o) >= g(x)) &&
    (cost(o) < cost(x) || gains.some((g) => g(o) > g(x)));
  return items.filter((x) => !items.some((o) => o !== x && beats(o, x)));
}

/** The item of least cost (the first of equal ones), or undefined for none. */
function cheapest<T>(items: readonly T[], cost: (x: T) => number): T | undefined {
  return items.reduce<T | undefined>(
    (best, x) => (best === undefined || cost(x) < cost(best) ? x : best),
    undefined,
  );
}

/** A rule in words, for reports. */
export const ruleName = (r: SettleRule) =>
  (r.tolerance < 1e-6 ? `the cap` : `tolerance ${r.tolerance}, patience ${r.patience}`) +
  (r.confidence !== undefined ? `, confidence ${r.confidence}` : '') +
  (r.gate ? `, iterating only where z > ${r.gate.above}` : '');

export interface RulePoint {
  rule: SettleRule;
  clean: Replay;
  corrupted: Replay;
  /** timesteps after t = 0 per image, over the clean and the noisy images together */
  meanTimesteps: number;
}

export interface AnytimeChoice {
  cap: number;
  /** the fixed T it is held against: the best accuracy under corruption whose clean accuracy stays within `cleanTolerance` of t = 0 */
  reference: { timesteps: number; clean: number; corrupted: number };
  /** the rule: the fewest mean timesteps among those within `margin` of the reference on both */
  chosen: RulePoint | undefined;
  /** the fewest fixed timesteps within `margin` of the reference on both */
  cheapestFixed: number;
  /**
   * Whether requests that name no timesteps should run auto: the rule needs at least
   * `saving` fewer mean timesteps than the cheapest fixed T as accurate.
   */
  byDefault: boolean;
  points: RulePoint[];
}

export interface ChooseOptions {
  cap: number;
  grid?: readonly SettleRule[];
  /**
   * the corrupted trajectories by family: a rule (or fixed T) qualifies only if no family's
   * accuracy falls below its t = 0 by more than `familyTolerance`
   */
  families?: Readonly<Record<string, readonly Trajectory[]>>;
  familyTolerance?: number;
  /** also try each rule behind a start gate at each of these z (settling.ts), and a gated fixed cap */
  gates?: { norm: ScoreNormalisation; above: readonly number[] };
  /** accuracy a rule may lose against the reference, clean and noisy alike (default 0.002) */
  margin?: number;
  /** clean accuracy the reference T may lose against t = 0 (default 0.005, the calibration's) */
  cleanTolerance?: number;
  /** the share of timesteps a rule must save to become the default (default 0.3) */
  saving?: number;
}

/**
 * Chooses a profile's anytime rule on validation trajectories (never test images). None is
 * chosen when no rule keeps the reference's accuracy: then fixed timesteps are the answer.
 */
export function chooseRule(
  clean: readonly Trajectory[],
  corrupted: readonly Trajectory[],
  options: ChooseOptions,
): AnytimeChoice {
  const { cap, margin = 0.002, cleanTolerance = 0.005, saving = 0.3, familyTolerance = 0 } = options;
  const families = Object.entries(options.families ?? {});
  const familyAtZero = families.map(([, ts]) => fixed(ts, 0).accuracy);
  const keepsFamilies = (measure: (ts: readonly Trajectory[]) => Replay) =>
    families.every(([, ts], k) => measure(ts).accuracy >= familyAtZero[k]! - familyTolerance - 1e-12);
  const at = Array.from({ length: cap + 1 }, (_, t) => ({
    clean: fixed(clean, t).accuracy,
    corrupted: fixed(corrupted, t).accuracy,
    families: t === 0 || keepsFamilies((ts) => fixed(ts, t)),
  }));
  let reference = { timesteps: 0, clean: at[0]!.clean, corrupted: at[0]!.corrupted };
  for (let t = 1; t <= cap; t++) {
    const a = at[t]!;
    if (a.clean >= at[0]!.clean - cleanTolerance && a.families && a.corrupted > reference.corrupted)
      reference = { timesteps: t, clean: a.clean, corrupted: a.corrupted };
  }
  const keeps = (a: { clean: number; corrupted: number }) =>
    a.corrupted >= reference.corrupted - margin && a.clean >= reference.clean - margin;
  const all = clean.length + corrupted.length;
  const base = options.grid ?? RULE_GRID;
  const grid = options.gates
    ? [
        ...base,
        ...options.gates.above.flatMap((above) => {
          const gate = { ...options.gates!.norm, above };
          // behind the gate, also the plain fixed cap: a rule that never settles before it
          return [...base, { tolerance: 1e-9, patience: cap }].map((r) => ({ ...r, gate }));
        }),
      ]
    : base;
  const points = grid.map((rule) => {
    const c = replay(clean, rule, cap);
    const n = replay(corrupted, rule, cap);
    const meanTimesteps = (c.meanTimesteps * c.count + n.meanTimesteps * n.count) / all;
    const point: RulePoint = { rule, clean: c, corrupted: n, meanTimesteps };
    return { point, families: keepsFamilies((ts) => replay(ts, rule, cap)) };
  });
  const admissible = points
    .filter((p) => p.families && p.point.clean.accuracy >= reference.clean - margin)
    .map((p) => p.point);
  // A gated rule may beat every fixed T that spares the families: the target is then its accuracy.
  const target = Math.max(reference.corrupted, ...admissible.map((p) => p.corrupted.accuracy));
  const chosen = cheapest(
    admissible.filter((p) => p.corrupted.accuracy >= target - margin),
    (p) => p.meanTimesteps,
  );
  const cheapestFixed = at.findIndex((a) => a.families && keeps(a));
  const beatsFixed = chosen !== undefined && chosen.corrupted.accuracy > reference.corrupted + margin;
  const byDefault =
    chosen !== undefined && (beatsFixed || chosen.meanTimesteps <= (1 - saving) * Math.max(0, cheapestFixed));
  return {
    cap,
    reference,
    chosen,
    cheapestFixed: Math.max(0, cheapestFixed),
    byDefault,
    points: points.map((p) => p.point),
  };
}

/** One way of choosing timesteps (a fixed T, or a rule) measured on every condition of an evaluation. */
export interface AnytimeRow {
  /** fixed timesteps, or the rule */
  fixed?: number;
  rule?: SettleRule;
  clean: Replay;
  /** accuracy and mean timesteps averaged over every corruption condition */
  corrupted: { accuracy: number; meanTimesteps: number };
  /** per corruption, averaged over its severities */
  corruptions: Record<string, { accuracy: number; meanTimesteps: number }>;
}

/** Fixed T = 0..cap and each rule, replayed on an evaluation's recorded trajectories. */
export function anytimeRows(
  results: readonly ConditionResult[],
  rules: readonly SettleRule[],
  cap: number,
): { fixed: AnytimeRow[]; auto: AnytimeRow[] } {
  const clean = results.find((r) => r.condition.corruption === 'clean');
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
  const trajectoriesOf = (r: ConditionResult) => {
    if (!r.trajectories) throw new Error(`${conditionName(r.condition)} was evaluated without recording`);
    return r.trajectories;
  };
  if (!clean) throw new Error('the evaluation has no clean condition');
  const row = (measure: (t: readonly Trajectory[]) => Replay, choice: Partial<AnytimeRow>): AnytimeRow => {
    const per = corrupted.map((r) => ({
      corruption: r.condition.corruption,
      replay: measure(trajectoriesOf(r)),
    }));
    const summarise = (ps: typeof per) => ({
      accuracy: mean(ps.map((p) => p.replay.accuracy)),
      meanTimesteps: mean(ps.map((p) => p.replay.meanTimesteps)),
    });
    const corruptions = Object.fromEntries(
      [...new Set(per.map((p) => p.corruption))].map((c) => [
        c,
        summarise(per.filter((p) => p.corruption === c)),
      ]),
    );
    return { ...choice, clean: measure(trajectoriesOf(clean)), corrupted: summarise(per), corruptions };
  };
  return {
    fixed: Array.from({ length: cap + 1 }, (_, t) => row((x) => fixed(x, t), { fixed: t })),
    auto: rules.map((rule) => row((x) => replay(x, rule, cap), { rule })),
  };
}

/** What anytime answers buy against the best fixed T, by the issue's yardstick. */
export interface AnytimeVerdict {
  /** the best fixed T (best corrupted mean, clean within 0.5 points of t = 0) */
  reference: { timesteps: number; clean: number; corrupted: number; cleanSE: number };
  /** the rule with the fewest timesteps that keeps it (corrupted mean within 0.2 points, clean within its SE) */
  best: { row: AnytimeRow; meanTimesteps: number; saving: number } | undefined;
  /** a saving of at least 30% of the reference's timesteps */
  met: boolean;
  /**
   * The fewest fixed timesteps that keep the reference's accuracy by the same measure: what
   * a caller who knew the model would ask for, and the fairer yardstick when the accuracy
   * plateaus long before the best T.
   */
  cheapestFixed: number;
}

/** Timesteps of a row: the larger of its clean and its corrupted mean, so that a saving holds for both. */
export const rowTimesteps = (row: AnytimeRow) =>
  Math.max(row.clean.meanTimesteps, row.corrupted.meanTimesteps);

export function anytimeVerdict(
  rows: { fixed: AnytimeRow[]; auto: AnytimeRow[] },
  referenceT: number,
  margin = 0.002,
  saving = 0.3,
): AnytimeVerdict {
  const ref = rows.fixed[referenceT]!;
  const p = ref.clean.accuracy;
  const cleanSE = Math.sqrt((p * (1 - p)) / ref.clean.count);
  const reference = { timesteps: referenceT, clean: p, corrupted: ref.corrupted.accuracy, cleanSE };
  const keeps = (r: AnytimeRow) =>
    r.corrupted.accuracy >= reference.corrupted - margin && r.clean.accuracy >= reference.clean - cleanSE;
  const row = cheapest(rows.auto.filter(keeps), rowTimesteps);
  const best = row && {
    row,
    meanTimesteps: rowTimesteps(row),
    saving: referenceT > 0 ? 1 - rowTimesteps(row) / referenceT : -Infinity,
  };
  const cheapestFixed = rows.fixed.find(keeps)?.fixed ?? referenceT;
  return { reference, best, met: best !== undefined && best.saving >= saving, cheapestFixed };
}

const pct = (x: number) => (x * 100).toFixed(2);

/** The anytime section of the evaluation report: fixed T and each rule, with the verdict. */
export function anytimeMarkdown(
  rows: { fixed: AnytimeRow[]; auto: AnytimeRow[] },
  verdict: AnytimeVerdict,
  marked: SettleRule & { source: string },
): string {
  const corruptions = Object.keys(rows.fixed[0]!.corruptions);
  const header = [
    '| | mean timesteps (clean / corrupted) | clean | corrupted mean | ' + corruptions.join(' | ') + ' |',
    '|---|---:|---:|---:|' + corruptions.map(() => '---:').join('|') + '|',
  ];
  const line = (name: string, r: AnytimeRow) =>
    `| ${name} | ${r.clean.meanTimesteps.toFixed(2)} / ${r.corrupted.meanTimesteps.toFixed(2)} | ${pct(r.clean.accuracy)} | ${pct(r.corrupted.accuracy)} | ` +
    corruptions.map((c) => pct(r.corruptions[c]!.accuracy)).join(' | ') +
    ' |';
  const isMarked = (r: AnytimeRow) => r.rule !== undefined && sameRule(r.rule, marked);
  const { reference: ref, best } = verdict;
  const front = undominated(rows.auto, rowTimesteps, [(x) => x.clean.accuracy, (x) => x.corrupted.accuracy]);
  return [
    '## Anytime answers (timesteps=auto)',
    '',
    `Each rule replayed on the same images' recorded dynamics (cap ${rows.fixed.length - 1}); accuracy (%). The profile's rule (${marked.source}): ${ruleName(marked)}, in bold. Of the ${rows.auto.length} rules tried, the table lists those no other rule beats on timesteps, clean and corrupted accuracy at once; the chart shows them all.`,
    '',
    ...header,
    ...rows.fixed.map((r) => line(`fixed T=${r.fixed}`, r)),
    ...rows.auto
      .filter((r) => isMarked(r) || r === best?.row || front.includes(r))
      .map((r) => {
        const name = `auto: ${ruleName(r.rule!)}`;
        return line(isMarked(r) ? `**${name}**` : name, r);
      }),
    '',
    `Against the best fixed T here, **T=${ref.timesteps}** (clean ${pct(ref.clean)} ± ${pct(ref.cleanSE)} SE, corrupted mean ${pct(ref.corrupted)}): ` +
      (best
        ? `the cheapest rule within 0.2 points under corruption and one clean SE is ${ruleName(best.row.rule!)}, at ${best.meanTimesteps.toFixed(2)} mean timesteps: ${ref.timesteps > 0 ? `${(best.saving * 100).toFixed(0)}% fewer` : 'more than T = 0'}. ${ref.timesteps === 0 ? 'Here the feedforward answer (T = 0) is as accurate as any, so no rule can save timesteps.' : `That ${verdict.met ? 'meets' : 'misses'} the target of 30% fewer timesteps than the best fixed T at its accuracy.`}`
        : 'no rule keeps its accuracy.'),
    '',
    `The fewest fixed timesteps within the same margins: **T=${verdict.cheapestFixed}**` +
      (best
        ? `; against it the rule's ${best.meanTimesteps.toFixed(2)} mean timesteps are ${best.meanTimesteps < verdict.cheapestFixed ? `${((1 - best.meanTimesteps / verdict.cheapestFixed) * 100).toFixed(0)}% fewer` : `${verdict.cheapestFixed > 0 ? `${((best.meanTimesteps / verdict.cheapestFixed - 1) * 100).toFixed(0)}% more` : 'more'}`}.`
        : '.'),
    '',
  ].join('\n');
}

/**
 * Each condition's answers at t = 0 and where a policy (a rule with its cap, or fixed T) stops,
 * as results over two "timesteps": what relativeMce() needs to give the policy's mCE against
 * t = 0 with its bootstrap interval.
 */
export function servedResults(
  results: readonly ConditionResult[],
  policy: { rule: SettleRule; cap: number } | { timesteps: number },
): ConditionResult[] {
  return results.map((r) => {
    if (!r.trajectories) throw new Error(`${conditionName(r.condition)} was evaluated without recording`);
    const rightAt = new Uint8Array(r.trajectories.length * 2);
    const correct = [0, 0];
    r.trajectories.forEach(({ label, steps }, i) => {
      const t = 'rule' in policy ? stoppingPoint(steps, policy.rule, policy.cap).t : policy.timesteps;
      for (const [k, at] of [0, t].entries()) {
        const right = steps[at]!.top === label ? 1 : 0;
        rightAt[i * 2 + k] = right;
        correct[k]! += right;
      }
    });
    const count = r.trajectories.length;
    return {
      condition: r.condition,
      count,
      correct,
      accuracy: correct.map((c) => c / count),
      lost: [0, 0],
      gained: [0, 0],
      rightAt,
      ids: r.ids ?? [],
    };
  });
}
