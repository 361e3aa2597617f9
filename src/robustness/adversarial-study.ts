/**
 * Adversarial images (made by scripts/attack.py through the dynamics in PyTorch) scored through
 * the serving engine, as every study is: each image decoded by preprocess() from the 8-bit PNG a
 * user would upload, stepped at t = 0..T. Per attack, epsilon and depth: accuracy and the
 * target's success at every t, and the changes against clean and against t = 0, each with its
 * 95% paired bootstrap interval over images; the served default answer; the corruption score's
 * AUROC for adversarial against clean; and, for a control run on the same images, the model
 * against the control at every t.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { loadConfig, requestDefaults } from '../config/config.js';
import { corruptionScore } from '../engine/corruption-score.js';
import { newSample, runTimesteps, type PredictiveStepper } from '../engine/predictive-step.js';
import { resolveRequest } from '../engine/resolve-request.js';
import { readStep, stoppingPoint, type SettleRule } from '../engine/settling.js';
import type { Coefficients } from '../model/hyperparameters.js';
import type { Manifest } from '../model/manifest.js';
import { lineChart, COLOURS, type Series } from './chart.js';
import { argmax } from './evaluate.js';
import { ImageSetError } from './image-set.js';
import { Random } from './imagenet-c/random.js';
import { quantileSorted } from './mce.js';
import { auroc } from './signal.js';
import { StudyInputs } from './study-inputs.js';

const outcomeSchema = z.object({
  accuracy: z.array(z.number()),
  targetSuccess: z.array(z.number()).optional(),
});

/** attack.json, as scripts/attack.py writes it (format predify-attack, version 1). */
export const attackRunSchema = z.object({
  format: z.literal('predify-attack'),
  version: z.literal(1),
  model: z.object({ dir: z.string(), name: z.string(), graphs: z.record(z.string(), z.string()) }),
  arm: z.string(),
  profile: z.string(),
  hyperparameters: z.array(z.object({ beta: z.number(), lambda: z.number(), alpha: z.number() })),
  timesteps: z.number().int().min(0),
  gradient: z.string(),
  goldenCheck: z.object({ maxLogitScaledDiff: z.number(), tolerance: z.number() }),
  images: z.object({
    source: z.string(),
    attacked: z.number().int(),
    list: z.array(z.object({ id: z.string(), label: z.number().int().min(0), file: z.string() })).min(1),
  }),
  targets: z.array(z.number().int()).nullable(),
  settings: z.object({
    steps: z.number().int(),
    relStepSize: z.number(),
    randomStart: z.boolean(),
    targetRule: z.string().nullable(),
  }),
  attacks: z.array(
    z.object({
      attack: z.string(),
      targeted: z.boolean(),
      epsilon: z.number(),
      through: z.number().int(),
      folder: z.string(),
      files: z.array(z.string()),
      pytorch: z.object({ beforeRounding: outcomeSchema, eightBit: outcomeSchema }),
    }),
  ),
  command: z.string(),
  measuredAt: z.string(),
});
export type AttackRecord = z.infer<typeof attackRunSchema>;

export interface AttackRun {
  dir: string;
  record: AttackRecord;
  /** the PyTorch form's logits on every image at every t, when attack.py kept them */
  logits?: Record<string, number[][][]>;
}

/** Reads and checks a run's attack.json (and logits.json when present). */
export async function readAttackRun(dir: string): Promise<AttackRun> {
  let text: string;
  try {
    text = await readFile(path.join(dir, 'attack.json'), 'utf8');
  } catch {
    throw new ImageSetError(`${dir}: no attack.json (make the run with scripts/attack.py)`);
  }
  let parsed: AttackRecord;
  try {
    parsed = attackRunSchema.parse(JSON.parse(text));
  } catch (err) {
    const detail =
      err instanceof z.ZodError
        ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
        : (err as Error).message;
    throw new ImageSetError(`${dir}/attack.json is not a run of scripts/attack.py: ${detail.slice(0, 300)}`);
  }
  const n = parsed.images.list.length;
  for (const a of parsed.attacks)
    if (a.files.length !== n)
      throw new ImageSetError(`${dir}/attack.json: ${a.folder} lists ${a.files.length} images, not ${n}`);
  if (parsed.targets && parsed.targets.length !== n)
    throw new ImageSetError(`${dir}/attack.json: ${parsed.targets.length} targets for ${n} images`);
  let logits: AttackRun['logits'];
  try {
    logits = JSON.parse(await readFile(path.join(dir, 'logits.json'), 'utf8')) as AttackRun['logits'];
  } catch {
    logits = undefined;
  }
  return { dir, record: parsed, ...(logits ? { logits } : {}) };
}

/** The served model a run must be scored on: its graphs, byte for byte. */
export function checkRunModel(run: AttackRun, manifest: Manifest): void {
  const differ = Object.entries(run.record.model.graphs).filter(
    ([name, sha]) => manifest.graphs[name]?.sha256 !== sha,
  );
  if (differ.length)
    throw new ImageSetError(
      `${run.dir} attacked another model than ${manifest.name} (graph ${differ.map(([n]) => n).join(', ')} differs)`,
    );
}

/** A mean over images at every t, with its 95% bootstrap interval (points for changes). */
export interface Estimate {
  value: number;
  interval95: [number, number];
}

/**
 * Per-image values at t = 0..T (image-major rows) as means with 95% percentile bootstrap
 * intervals; every t is scored on the same draw of images, so a row of differences gives the
 * paired interval of a change.
 */
export function bootstrapMeans(
  rows: readonly (readonly number[])[],
  replicates = 1000,
  seed = 2,
): Estimate[] {
  const n = rows.length;
  const T = rows[0]?.length ?? 0;
  const means = Array.from({ length: T }, (_, t) => rows.reduce((s, r) => s + r[t]!, 0) / n);
  const draws: number[][] = Array.from({ length: T }, () => []);
  const rng = new Random(seed);
  const sums = new Float64Array(T);
  for (let k = 0; k < replicates; k++) {
    sums.fill(0);
    for (let i = 0; i < n; i++) {
      const r = rows[rng.int(0, n)]!;
      for (let t = 0; t < T; t++) sums[t]! += r[t]!;
    }
    for (let t = 0; t < T; t++) draws[t]!.push(sums[t]! / n);
  }
  const r4 = (x: number) => Math.round(x * 10000) / 10000;
  return means.map((m, t) => {
    const xs = draws[t]!.sort((a, b) => a - b);
    return { value: r4(m), interval95: [r4(quantileSorted(xs, 0.025)), r4(quantileSorted(xs, 0.975))] };
  });
}

/** What the engine answered for one image at every t. */
interface Trajectory {
  top: number[];
  logits: Float32Array[];
  errors: Float32Array[];
}

export interface ArmEngine {
  stepper: PredictiveStepper;
  manifest: Manifest;
  coefficients: readonly Coefficients[];
}

/** Every file of `files` through the engine at t = 0..T, `batch` at a time. */
async function score(
  engine: ArmEngine,
  inputs: StudyInputs,
  dir: string,
  files: readonly string[],
  labels: readonly number[],
  T: number,
  batch: number,
): Promise<Trajectory[]> {
  const out: Trajectory[] = [];
  for (let start = 0; start < files.length; start += batch) {
    const chunk = files.slice(start, start + batch);
    const opened = await Promise.all(
      chunk.map(async (file, k) => {
        const o = await inputs.open({
          id: file,
          label: labels[start + k]!,
          source: { file: path.join(dir, file) },
        });
        if (!o) throw new ImageSetError(`${dir}/${file}: unreadable`);
        return o.clean;
      }),
    );
    const samples = opened.map((x) => newSample(x, engine.coefficients, T));
    const rows: Trajectory[] = samples.map(() => ({ top: [], logits: [], errors: [] }));
    await runTimesteps(engine.stepper, samples, T, (calls) => {
      for (const steps of calls)
        steps.forEach((s, b) => {
          rows[b]!.top.push(argmax(s.logits));
          rows[b]!.logits.push(Float32Array.from(s.logits));
          rows[b]!.errors.push(Float32Array.from(s.errors));
        });
    });
    out.push(...rows);
  }
  return out;
}

const hits = (rows: readonly Trajectory[], want: readonly number[]) =>
  rows.map((r, i) => r.top.map((top) => (top === want[i] ? 1 : 0)));

const minus = (a: readonly number[][], b: readonly number[][]) =>
  a.map((row, i) => row.map((v, t) => v - b[i]![t]!));

const againstZero = (a: readonly number[][]) => a.map((row) => row.map((v) => v - row[0]!));

const points = (es: readonly Estimate[]) =>
  es.map((e) => ({
    value: Math.round(e.value * 10000) / 100,
    interval95: e.interval95.map((x) => Math.round(x * 10000) / 100) as [number, number],
  }));

/** The served default's answer (fixed T, or auto with the profile's rule) for each image. */
function servedAnswers(rows: readonly Trajectory[], policy: Policy) {
  return rows.map((r) => {
    const t =
      'rule' in policy
        ? stoppingPoint(
            r.logits.map((logits, k) => readStep({ logits, errors: r.errors[k]! })),
            policy.rule,
            policy.cap,
          ).t
        : policy.timesteps;
    return { t, top: r.top[t]! };
  });
}

export interface AdversarialOptions {
  /** the model's run first, then the controls' runs on the same images */
  runs: readonly { run: AttackRun; engine: ArmEngine }[];
  batch: number;
  onProgress?: (line: string) => void;
}

/** The whole study; returns results.json's content, results.md and the charts (SVG). */
export async function adversarialStudy(o: AdversarialOptions) {
  const [first] = o.runs;
  if (!first) throw new ImageSetError('no attack run to score');
  const ids = first.run.record.images.list.map((i) => i.id).join('\n');
  for (const { run } of o.runs.slice(1))
    if (run.record.images.list.map((i) => i.id).join('\n') !== ids)
      throw new ImageSetError(
        `${run.dir} attacked other images than ${first.run.dir}: a control needs the same images`,
      );
  const T = Math.min(...o.runs.map((r) => r.run.record.timesteps));
  const arms = [];
  const policy = servedPolicy(first.engine.manifest, first.run.record.profile, T);
  // The served default applies to arms on the model's own network (the term controls), not to
  // another network's feedback.
  const sameNetwork = (m: Manifest) =>
    m.pcoders.every(
      (pc, i) =>
        first.engine.manifest.graphs[pc.feedback]?.sha256 === m.graphs[pc.feedback]?.sha256 &&
        pc.feedback === first.engine.manifest.pcoders[i]!.feedback,
    );
  for (const { run, engine } of o.runs)
    arms.push(
      await scoreArm(
        run,
        engine,
        sameNetwork(engine.manifest) ? policy : undefined,
        T,
        o.batch,
        o.onProgress,
      ),
    );
  const [model, ...controls] = arms;
  const comparisons = controls.map((c) => ({
    control: c.arm,
    attacks: model!.attacks.flatMap((a) => {
      const other = c.attacks.find(
        (b) => b.attack === a.attack && b.epsilon === a.epsilon && b.through === a.through,
      );
      if (!other) return [];
      return [
        {
          attack: a.attack,
          epsilon: a.epsilon,
          through: a.through,
          accuracyChange: points(bootstrapMeans(minus(a.right, other.right))),
        },
      ];
    }),
  }));
  const json: AdversarialReport = {
    model: first.run.record.model.name,
    profile: first.run.record.profile,
    timesteps: T,
    images: first.run.record.images,
    arms: arms.map(({ report }) => report),
    modelAgainstControls: comparisons,
    measuredAt: new Date().toISOString(),
  };
  return { json, markdown: markdownReport(json, arms), charts: charts(arms, T) };
}

type Policy = { rule: SettleRule; cap: number } | { timesteps: number };

/**
 * What a request that names no timesteps gets from a server with the default configuration, on
 * the model's profile, within the T the runs were scored to. Controls are answered by the same
 * policy, so that the served answers differ only in the dynamics.
 */
function servedPolicy(manifest: Manifest, profile: string, T: number): Policy {
  const unnamed = resolveRequest(manifest, requestDefaults(loadConfig({})), { profile });
  const cap = Math.min(T, unnamed.timesteps);
  return unnamed.settle ? { rule: unnamed.settle, cap } : { timesteps: cap };
}

async function scoreArm(
  run: AttackRun,
  engine: ArmEngine,
  /** undefined for an arm on another network: the gate reads the model's error statistics */
  policyNow: Policy | undefined,
  T: number,
  batch: number,
  onProgress?: (line: string) => void,
) {
  checkRunModel(run, engine.manifest);
  const { record } = run;
  const inputs = new StudyInputs(engine.manifest.input);
  const labels = record.images.list.map((i) => i.label);
  const norm = engine.manifest.corruptionScore;

  onProgress?.(`${record.arm}: clean images`);
  const clean = await score(
    engine,
    inputs,
    run.dir,
    record.images.list.map((i) => i.file),
    labels,
    T,
    batch,
  );
  const cleanRight = hits(clean, labels);
  const cleanServed = policyNow && servedAnswers(clean, policyNow);
  const cleanScores = norm ? clean.map((r) => corruptionScore(r.errors[0]!, norm)) : undefined;
  let worstDiff = run.logits?.clean ? logitDiff(clean, run.logits.clean) : undefined;

  const attacks = [];
  for (const a of record.attacks) {
    onProgress?.(`${record.arm}: ${a.attack} eps ${a.epsilon} through ${a.through}`);
    const rows = await score(engine, inputs, run.dir, a.files, labels, T, batch);
    const right = hits(rows, labels);
    const target = a.targeted && record.targets ? hits(rows, record.targets) : undefined;
    const logits = run.logits?.[a.folder];
    if (logits) worstDiff = Math.max(worstDiff ?? 0, logitDiff(rows, logits));
    attacks.push({
      attack: a.attack,
      epsilon: a.epsilon,
      through: a.through,
      right,
      report: {
        attack: a.attack,
        targeted: a.targeted,
        epsilon: a.epsilon,
        through: a.through,
        accuracy: points(bootstrapMeans(right)),
        ...(target ? { targetSuccess: points(bootstrapMeans(target)) } : {}),
        againstClean: points(bootstrapMeans(minus(right, cleanRight))),
        againstTimestepZero: points(bootstrapMeans(againstZero(right))),
        ...(target ? { targetAgainstTimestepZero: points(bootstrapMeans(againstZero(target))) } : {}),
        ...(policyNow && cleanServed
          ? {
              served: servedReport(
                servedAnswers(rows, policyNow),
                cleanServed,
                labels,
                a.targeted ? record.targets : null,
              ),
            }
          : {}),
        ...(cleanScores
          ? {
              corruptionScoreAuroc:
                Math.round(
                  auroc(
                    cleanScores,
                    rows.map((r) => corruptionScore(r.errors[0]!, norm!)),
                  ) * 1000,
                ) / 1000,
            }
          : {}),
        pytorch: a.pytorch,
      },
    });
  }
  const servedDefault = !policyNow
    ? "not scored: another network's feedback, whose errors the model's gate was not fitted to"
    : 'rule' in policyNow
      ? `timesteps=auto (${describeRule(policyNow.rule)}, cap ${policyNow.cap})`
      : `timesteps=${policyNow.timesteps}`;
  return {
    arm: record.arm,
    attacks,
    report: {
      arm: record.arm,
      run: run.dir,
      profile: record.profile,
      hyperparameters: record.hyperparameters,
      gradient: record.gradient,
      servedDefault,
      clean: {
        accuracy: points(bootstrapMeans(cleanRight)),
        ...(cleanServed
          ? { served: points(bootstrapMeans(cleanServed.map((s, i) => [s.top === labels[i] ? 1 : 0])))[0]! }
          : {}),
      },
      // the engine against the PyTorch form that made the images, on the same 8-bit files
      ...(worstDiff !== undefined
        ? { pytorchAgreement: { maxLogitScaledDiff: worstDiff, tolerance: record.goldenCheck.tolerance } }
        : {}),
      attacks: attacks.map((a) => a.report),
    },
  };
}

/** The served default's answers to attacked images: accuracy, timesteps, against clean, target. */
function servedReport(
  served: ReturnType<typeof servedAnswers>,
  clean: ReturnType<typeof servedAnswers>,
  labels: readonly number[],
  targets: readonly number[] | null,
) {
  const right = served.map((s, i) => [s.top === labels[i] ? 1 : 0]);
  return {
    accuracy: points(bootstrapMeans(right))[0]!,
    meanTimesteps: served.reduce((sum, x) => sum + x.t, 0) / served.length,
    againstClean: points(
      bootstrapMeans(right.map((r, i) => [r[0]! - (clean[i]!.top === labels[i] ? 1 : 0)])),
    )[0]!,
    ...(targets
      ? { targetSuccess: points(bootstrapMeans(served.map((s, i) => [s.top === targets[i] ? 1 : 0])))[0]! }
      : {}),
  };
}

const describeRule = (r: SettleRule) =>
  [
    `tolerance ${r.tolerance}`,
    `patience ${r.patience}`,
    ...(r.confidence !== undefined ? [`confidence ${r.confidence}`] : []),
    ...(r.gate ? [`gate z > ${r.gate.above}`] : []),
  ].join(', ');

/** The largest difference between the engine's logits and the PyTorch form's, as check-golden scales it. */
function logitDiff(rows: readonly Trajectory[], reference: readonly number[][][]): number {
  let worst = 0;
  rows.forEach((r, i) =>
    r.logits.forEach((logits, t) => {
      const ref = reference[i]?.[t];
      if (!ref) return;
      const scale = Math.max(1, ...ref.map(Math.abs));
      logits.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - ref[k]!) / scale)));
    }),
  );
  return worst;
}

type Arm = Awaited<ReturnType<typeof scoreArm>>;

/** results.json of npm run eval:adversarial. */
export interface AdversarialReport {
  model: string;
  profile: string;
  timesteps: number;
  images: AttackRecord['images'];
  arms: Arm['report'][];
  modelAgainstControls: {
    control: string;
    attacks: { attack: string; epsilon: number; through: number; accuracyChange: Estimate[] }[];
  }[];
  measuredAt: string;
}

const pct = (e: Estimate) =>
  `${e.value.toFixed(1)} (${e.interval95[0].toFixed(1)} to ${e.interval95[1].toFixed(1)})`;
const signedPts = (e: Estimate) => {
  const s = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
  return `${s(e.value)} (${s(e.interval95[0])} to ${s(e.interval95[1])})`;
};

function markdownReport(json: AdversarialReport, arms: Arm[]): string {
  const T = json.timesteps;
  const shown = [...new Set([0, 1, 2, Math.ceil(T / 2), T])].filter((t) => t <= T).sort((a, b) => a - b);
  const lines = [
    `# Adversarial robustness of ${json.model} (profile ${json.profile}) over timesteps`,
    '',
    `${json.images.attacked} images of ${json.images.source}, scored through the serving engine from the 8-bit PNGs; accuracy and target success in %, changes in points, each with its 95% paired bootstrap interval over images.`,
    '',
  ];
  for (const arm of arms) {
    const r = arm.report;
    lines.push(
      `## Arm: ${r.arm}`,
      '',
      `Run ${r.run}; gradient ${r.gradient}; served default ${r.servedDefault}. Clean accuracy at t = ${shown.join(', ')}: ${shown.map((t) => pct(r.clean.accuracy[t]!)).join('; ')}.` +
        (r.pytorchAgreement
          ? ` Engine against the PyTorch form on the same files: largest scaled logit difference ${r.pytorchAgreement.maxLogitScaledDiff.toExponential(1)} (tolerance ${r.pytorchAgreement.tolerance}).`
          : ''),
      '',
      `| attack | eps | through | ${shown.map((t) => `acc t=${t}`).join(' | ')} | acc t=${T} - t=0 | target t=0 | target t=${T} | served acc | AUROC |`,
      `|---|---|---|${shown.map(() => '---|').join('')}---|---|---|---|---|`,
    );
    for (const a of r.attacks)
      lines.push(
        `| ${a.attack} | ${a.epsilon} | ${a.through} | ${shown.map((t) => pct(a.accuracy[t]!)).join(' | ')} | ${signedPts(a.againstTimestepZero[T]!)} | ${a.targetSuccess ? pct(a.targetSuccess[0]!) : ''} | ${a.targetSuccess ? pct(a.targetSuccess[T]!) : ''} | ${a.served ? pct(a.served.accuracy) : ''} | ${a.corruptionScoreAuroc ?? ''} |`,
      );
    lines.push('');
  }
  const model = arms[0]!.report;
  const transfer = model.attacks.filter((a) => a.through === 0);
  if (transfer.length)
    lines.push(
      `## Transfer (${model.arm}): attacks made against t = 0, answered at later t`,
      '',
      'Does the feedback undo an attack on the feedforward network? Accuracy at t less at t = 0, in points, on the same images.',
      '',
      `| attack | eps | ${shown
        .filter((t) => t > 0)
        .map((t) => `t=${t}`)
        .join(' | ')} |`,
      `|---|---|${shown
        .filter((t) => t > 0)
        .map(() => '---|')
        .join('')}`,
      ...transfer.map(
        (a) =>
          `| ${a.attack} | ${a.epsilon} | ${shown
            .filter((t) => t > 0)
            .map((t) => signedPts(a.againstTimestepZero[t]!))
            .join(' | ')} |`,
      ),
      '',
    );
  lines.push(
    `## Before and after 8-bit rounding (${model.arm}, in the PyTorch form)`,
    '',
    `Accuracy in %, at t = 0 and t = ${T}, of the images as the attack left them and as saved at 8 bits.`,
    '',
    '| attack | eps | through | t=0 before | t=0 after | last t before | last t after |',
    '|---|---|---|---|---|---|---|',
    ...model.attacks.map((a) => {
      const b = a.pytorch.beforeRounding.accuracy;
      const e = a.pytorch.eightBit.accuracy;
      const f = (x: number | undefined) => (x === undefined ? '' : (x * 100).toFixed(1));
      return `| ${a.attack} | ${a.epsilon} | ${a.through} | ${f(b[0])} | ${f(e[0])} | ${f(b.at(-1))} | ${f(e.at(-1))} |`;
    }),
    '',
  );
  for (const c of json.modelAgainstControls) {
    lines.push(
      `## The model against the control ${c.control}`,
      '',
      `Accuracy of the model less the control's, in points, each arm on images attacked through its own dynamics.`,
      '',
      `| attack | eps | through | ${shown.map((t) => `t=${t}`).join(' | ')} |`,
      `|---|---|---|${shown.map(() => '---|').join('')}`,
    );
    for (const a of c.attacks)
      lines.push(
        `| ${a.attack} | ${a.epsilon} | ${a.through} | ${shown.map((t) => signedPts(a.accuracyChange[t]!)).join(' | ')} |`,
      );
    lines.push('');
  }
  return lines.join('\n');
}

/** Accuracy against t, one chart per attack and depth, a line per epsilon (the model's arm). */
function charts(arms: Arm[], T: number): Record<string, string> {
  const model = arms[0]!;
  const out: Record<string, string> = {};
  const keys = [...new Set(model.attacks.map((a) => `${a.attack}-through-${a.through}`))];
  for (const key of keys) {
    const members = model.attacks.filter((a) => `${a.attack}-through-${a.through}` === key);
    const series: Series[] = [
      {
        name: 'clean',
        values: model.report.clean.accuracy.map((e) => e.value / 100),
        colour: '#000000',
        bold: true,
      },
      ...members.map((a, k) => ({
        name: `eps ${a.epsilon}`,
        values: a.report.accuracy.map((e) => e.value / 100),
        colour: COLOURS[k % COLOURS.length]!,
      })),
    ];
    out[`${key}.svg`] = lineChart(
      series,
      T,
      `${model.report.arm}: ${members[0]!.attack} ${members[0]!.through === 0 ? 'made against t = 0 (feedforward)' : `made through t = 0..${members[0]!.through}`}, answered at t`,
      { timesteps: members[0]!.through, label: 'attacked at' },
    );
  }
  return out;
}
