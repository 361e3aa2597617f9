/**
 * A model directory's manifest.json: its zod schema (inputs, labels, PCoders, graphs and their
 * checksums, profiles, the anytime rule, the corruption score), reading and validating it, and
 * which of its graphs a given use opens.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { errors } from '../errors.js';
import { fileError } from './file-errors.js';
import { hyperparameterProblems, normaliseHyperparameters } from './hyperparameters.js';

export const MANIFEST_FILE = 'manifest.json';

// 'steps': the number of timesteps a call of the loop graph runs.
const dim = z.union([z.literal('batch'), z.literal('steps'), z.number().int().positive()]);
const shape3 = z.tuple([
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

const tensorSpec = z.object({
  name: z.string().min(1),
  type: z.literal('float32'),
  shape: z.array(dim).min(1),
});

const graphSpec = z.object({
  // A bare file name: a manifest cannot point outside its own directory.
  file: z.string().regex(/^[\w.-]+\.onnx$/, 'must be a file name in the model directory ending in .onnx'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
  // Weights kept outside the graph (ONNX external data), e.g. shared by the step and loop graphs.
  data: z
    .object({
      file: z.string().regex(/^[\w-][\w.-]*$/, 'must be a file name in the model directory'),
      sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
    })
    .optional(),
  inputs: z.array(tensorSpec).min(1),
  outputs: z.array(tensorSpec).min(1),
});

// Ranges and the sum rule are checked per model below, by the one rule for them.
const hyperparameters = z.object({ beta: z.number(), lambda: z.number(), alpha: z.number() });

const pcoder = z.object({
  name: z.string().min(1),
  layer: z.string(),
  shape: shape3,
  targetShape: shape3,
  hyperparameters,
  gradientScale: z.object({
    elements: z.number().int().positive(),
    // C_i: a whole count when we measure it, a mean over perturbations when the Predify package did
    influence: z.number().positive(),
    scale: z.number().positive(),
  }),
  encoder: z.string(),
  feedback: z.string(),
});

export const inputSpec = z.object({
  channels: z.union([z.literal(1), z.literal(3)]),
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  colorspace: z.enum(['grey', 'rgb']),
  resize: z.enum(['contain', 'cover', 'fill']),
  background: z.array(z.number().int().min(0).max(255)).min(1).max(3),
  mean: z.array(z.number()),
  std: z.array(z.number().positive()),
  scale: z.number().positive(),
});

/** How an anytime request (timesteps=auto) on a profile stops, chosen by `npm run calibrate`. */
const anytime = z.object({
  tolerance: z.number().positive().max(1),
  patience: z.number().int().min(1),
  confidence: z.number().positive().max(1).optional(),
  /** requests on the profile that name no timesteps run timesteps=auto (unless DEFAULT_TIMESTEPS is set) */
  default: z.boolean().optional(),
  maxTimesteps: z.number().int().min(1),
  /**
   * iterate only inputs whose largest z of ln e_i(0) is above this (the corruption score's
   * normalisation); the others are answered at t = 0. Needs the manifest's corruptionScore.
   */
  gate: z.number().optional(),
  calibration: z.record(z.string(), z.unknown()).optional(),
});

/**
 * What the corruption score is measured against (src/engine/corruption-score.ts), written by
 * `npm run calibrate`: ln e_i(0) on clean validation images, and the score's quantiles there.
 */
const corruptionScore = z.object({
  logErrorMean: z.array(z.number()),
  logErrorStd: z.array(z.number().positive()),
  /** the score on those clean images: what a caller can set a threshold against */
  cleanQuantiles: z.object({ p50: z.number(), p90: z.number(), p95: z.number(), p99: z.number() }).optional(),
  calibration: z.record(z.string(), z.unknown()).optional(),
});

/** A named set of hyperparameters, one per PCoder, with the timesteps to use it for. */
const profile = z.object({
  description: z.string().default(''),
  hyperparameters: z.array(hyperparameters).min(1),
  recommendedTimesteps: z.number().int().min(0).optional(),
  anytime: anytime.optional(),
  /** how the values were chosen (search space, data, scores): a record, not read by the server */
  calibration: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Batch sizes measured by `npm run tune`, by execution provider: the engine serves at `size`
 * without measuring at start-up when the machine matches (src/engine/batch-tuning.ts).
 */
const batchTuning = z.record(
  z.string(),
  z.object({
    size: z.number().int().min(1),
    curve: z.array(z.object({ size: z.number().int().min(1), sampleStepsPerSecond: z.number().positive() })),
    /** the machine's logical cores and ORT_INTRA_OP_THREADS when it was measured */
    cpus: z.number().int().min(1),
    threads: z.number().int().min(0),
    measuredAt: z.string(),
  }),
);
export type BatchTuning = z.infer<typeof batchTuning>;

/** The profile made of the hyperparameters in `pcoders`, always present. */
export const EXPORTED_PROFILE = 'exported';

const manifestSchema = z
  .object({
    format: z.literal('predify-serve/model'),
    version: z.literal(1),
    name: z.string().regex(/^[\w.-]+$/, 'must be letters, digits, dot, dash or underscore'),
    /**
     * The model's version for the Open Inference Protocol (a positive whole number, as its
     * repositories number them); the exporter raises it when re-exported weights change
     */
    modelVersion: z
      .string()
      .regex(/^[1-9]\d{0,17}$/, 'must be a positive whole number, as a string')
      .default('1'),
    description: z.string().default(''),
    input: inputSpec,
    labels: z.array(z.string()).min(2),
    gradientScaling: z.boolean(),
    pcoders: z.array(pcoder).min(1),
    head: z.string(),
    /**
     * The whole timestep as one graph (scripts/predify/step_graph.py); models exported before it
     * existed run graph by graph
     */
    step: z.string().optional(),
    /** several timesteps in one call, the state carried inside (scripts/predify/loop_graph.py) */
    loop: z.string().optional(),
    /** an int8 variant's record: its source model, scheme and calibration (npm run quantize) */
    quantization: z.record(z.string(), z.unknown()).optional(),
    graphs: z.record(z.string(), graphSpec),
    golden: z.object({ file: z.string(), sha256: z.string() }).optional(),
    /** timesteps to use with the exported hyperparameters, when known */
    recommendedTimesteps: z.number().int().min(0).optional(),
    /** how anytime requests stop with the exported hyperparameters, when calibrated */
    anytime: anytime.optional(),
    /** the corruption score's normalisation; without it answers carry no score (null) */
    corruptionScore: corruptionScore.optional(),
    profiles: z
      .record(z.string().regex(/^[a-z][\w-]*$/, 'profile names are lowercase words'), profile)
      .default({}),
    /** the profile a request gets when it names none */
    defaultProfile: z.string().default(EXPORTED_PROFILE),
    batchTuning: batchTuning.optional(),
  })
  .superRefine((m, ctx) => {
    const issue = (p: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path: p, message });
    if (m.input.mean.length !== m.input.channels) issue(['input', 'mean'], 'needs one value per channel');
    if (m.input.std.length !== m.input.channels) issue(['input', 'std'], 'needs one value per channel');
    if ((m.input.colorspace === 'grey') !== (m.input.channels === 1)) {
      issue(['input', 'colorspace'], 'grey needs 1 channel and rgb 3');
    }
    if (!m.graphs[m.head]) issue(['head'], `names graph '${m.head}', which is not in graphs`);
    for (const key of ['step', 'loop'] as const) {
      const name = m[key];
      if (name !== undefined && !m.graphs[name])
        issue([key], `names graph '${name}', which is not in graphs`);
    }
    if (m.loop !== undefined && m.step === undefined) issue(['loop'], 'needs the step graph it loops');
    let below: readonly number[] = [m.input.channels, m.input.height, m.input.width];
    m.pcoders.forEach((pc, i) => {
      for (const key of ['encoder', 'feedback'] as const) {
        if (!m.graphs[pc[key]])
          issue(['pcoders', i, key], `names graph '${pc[key]}', which is not in graphs`);
      }
      if (pc.targetShape.join() !== below.join()) {
        issue(['pcoders', i, 'targetShape'], `is [${pc.targetShape}] but the level below is [${below}]`);
      }
      below = pc.shape;
    });
    for (const p of hyperparameterProblems(m.pcoders.map((pc) => pc.hyperparameters)))
      issue(['pcoders', p.pcoder, 'hyperparameters'], p.message);
    if (m.profiles[EXPORTED_PROFILE])
      issue(['profiles', EXPORTED_PROFILE], 'is reserved for the hyperparameters in pcoders');
    for (const [name, p] of Object.entries(m.profiles)) {
      if (p.hyperparameters.length !== m.pcoders.length) {
        issue(['profiles', name, 'hyperparameters'], `needs one set per PCoder (${m.pcoders.length})`);
      }
      for (const problem of hyperparameterProblems(p.hyperparameters))
        issue(['profiles', name, 'hyperparameters', problem.pcoder], problem.message);
    }
    if (m.corruptionScore) {
      for (const key of ['logErrorMean', 'logErrorStd'] as const)
        if (m.corruptionScore[key].length !== m.pcoders.length)
          issue(['corruptionScore', key], `needs one value per PCoder (${m.pcoders.length})`);
    }
    if (m.defaultProfile !== EXPORTED_PROFILE && !m.profiles[m.defaultProfile]) {
      issue(['defaultProfile'], `names profile '${m.defaultProfile}', which is not in profiles`);
    }
  })
  // The top PCoder's lambda is ignored, so it is stored as what it means: 0.
  .transform((m) => {
    const top = normaliseHyperparameters(m.pcoders.map((pc) => pc.hyperparameters));
    return {
      ...m,
      pcoders: m.pcoders.map((pc, i) => ({ ...pc, hyperparameters: top[i]! })),
      profiles: Object.fromEntries(
        Object.entries(m.profiles).map(([name, p]) => [
          name,
          { ...p, hyperparameters: normaliseHyperparameters(p.hyperparameters) },
        ]),
      ),
    };
  });

/** Every profile of a model by name, the exported hyperparameters included. */
export function profilesOf(m: Manifest): Record<string, z.infer<typeof profile>> {
  const exported = {
    description: 'the hyperparameters the model was exported with',
    hyperparameters: m.pcoders.map((pc) => pc.hyperparameters),
    ...(m.recommendedTimesteps !== undefined ? { recommendedTimesteps: m.recommendedTimesteps } : {}),
    ...(m.anytime ? { anytime: m.anytime } : {}),
  };
  return { [EXPORTED_PROFILE]: exported, ...m.profiles };
}

export type Manifest = z.infer<typeof manifestSchema>;
export type PCoderSpec = Manifest['pcoders'][number];
export type GraphSpec = z.infer<typeof graphSpec>;
export type InputSpec = Manifest['input'];

/**
 * Which of a manifest's graphs a model needs. Served, a model with a loop graph runs every call
 * through it, one timestep or several (the loop graph at one iteration is the step graph), and
 * E_1 once per sample: each session keeps its own copy of its weights, so opening the step
 * graph beside the loop graph would hold every weight twice. `single-step` opens the step graph
 * instead, for an engine that computes one timestep per call; `all` opens everything, for tools
 * that run graph by graph or compare the graphs.
 */
export type GraphSet = 'served' | 'single-step' | 'all';

export function graphsToOpen(m: Manifest, which: GraphSet): string[] {
  if (which !== 'all' && m.step !== undefined) {
    const whole = which === 'served' && m.loop !== undefined ? m.loop : m.step;
    return [m.pcoders[0]!.encoder, whole];
  }
  const whole = [...(m.step ? [m.step] : []), ...(m.loop ? [m.loop] : [])];
  return [...new Set([...m.pcoders.flatMap((pc) => [pc.encoder, pc.feedback]), m.head, ...whole])];
}

/** Validates a parsed manifest; the error names the file and the field. */
export function parseManifest(raw: unknown, file: string): Manifest {
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
      .join('; ');
    throw errors.manifestInvalid(file, detail);
  }
  return parsed.data;
}

/**
 * A model's identity: SHA-256 of its manifest as parsed (the graphs are in it by checksum),
 * leaving out the batch size recorded for a machine, which changes no answer. Two servers with
 * the same hash answer alike; a study checks it on every server it uses.
 */
export function modelHash(manifest: Manifest): string {
  return createHash('sha256')
    .update(JSON.stringify({ ...manifest, batchTuning: undefined }))
    .digest('hex');
}

export async function readManifest(modelDir: string): Promise<Manifest> {
  const file = path.join(modelDir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fileError(err, file);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw errors.manifestInvalid(file, `not valid JSON (${(err as Error).message})`);
  }
  return parseManifest(raw, file);
}
