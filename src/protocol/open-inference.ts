/**
 * The KServe Open Inference Protocol (V2), REST form: request schemas and the mapping between
 * its tensors and our per-timestep classifications. No HTTP here: src/routes/v2.ts serves it.
 *
 * A model takes one input tensor, `input`: FP32, already preprocessed (normalised like
 * /classify does), shape [N, C, H, W] or [C, H, W]. It answers with up to three outputs, all
 * indexed by timestep t = 0..T:
 *   probabilities  FP32  [N, T+1, classes]  softmax of the head's logits
 *   predictions    INT64 [N, T+1]           the most probable class
 *   pcoder_errors  FP32  [N, T+1, PCoders]  each PCoder's prediction error e_i(t)
 * With timesteps "auto", each sample stops when its dynamics settle: T is the latest stop of
 * the batch, a sample that stopped earlier repeats its last step, and a fourth output says
 * where each stopped:
 *   timesteps      INT64 [N]                the last timestep computed for each sample
 * A model whose manifest has a calibrated corruption score also answers, by default:
 *   corruption_score  FP32 [N]              how unlike clean data each input looks (t = 0)
 */
import { z } from 'zod';
import type { Classification } from '../engine/classifier.js';
import { argmax, softmax } from '../engine/results.js';
import type { Manifest } from '../model/manifest.js';

export const INPUT_NAME = 'input';
export const OUTPUT_NAMES = ['probabilities', 'predictions', 'pcoder_errors'] as const;
/** Also given, by default, for timesteps "auto": each sample's last timestep computed. */
export const AUTO_OUTPUT = 'timesteps';
/** Given, by default, by a model with a calibrated corruption score. */
export const SCORE_OUTPUT = 'corruption_score';
export type OutputName = (typeof OUTPUT_NAMES)[number] | typeof AUTO_OUTPUT | typeof SCORE_OUTPUT;

/** The outputs of a request that names none. */
export function defaultOutputs(manifest: Manifest, anytime: boolean): OutputName[] {
  const names: OutputName[] = [...OUTPUT_NAMES];
  if (anytime) names.push(AUTO_OUTPUT);
  if (manifest.corruptionScore) names.push(SCORE_OUTPUT);
  return names;
}

/** A request the protocol cannot serve: the route answers `status` with its message. */
export class ProtocolError extends Error {
  readonly status: number;

  constructor(message: string, status = 400) {
    super(message);
    this.status = status;
  }
}

const parameters = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

/**
 * Numbers, or arrays nested at most MAX_NESTING deep: a tensor's data, flat or nested, in
 * row-major order. Bounded, not recursive, so that a body of ten thousand '[' is a 400 and
 * never a stack overflow.
 */
type TensorData = number | TensorData[];
const MAX_NESTING = 4;
function tensorValues(depth: number): z.ZodType<TensorData> {
  const error = `must be numbers, in arrays nested at most ${MAX_NESTING} deep`;
  return depth === 0
    ? z.number({ error })
    : z.union([z.number(), z.array(tensorValues(depth - 1))], { error });
}
const tensorData = z.array(tensorValues(MAX_NESTING - 1));

/** The request body; the model's own limits (its profiles, its input shape) are checked on it later. */
export function inferRequestSchema(limits: { maxTimesteps: number }) {
  return z
    .object({
      id: z.string().max(256).optional(),
      parameters: z
        .object({
          timesteps: z
            .union(
              [
                z.literal('auto'),
                z
                  .number()
                  .int('parameters.timesteps must be a whole number')
                  .min(0, 'parameters.timesteps must be at least 0')
                  .max(limits.maxTimesteps, `parameters.timesteps must be at most ${limits.maxTimesteps}`),
              ],
              { error: 'parameters.timesteps must be a whole number or "auto"' },
            )
            .optional(),
          profile: z.string().optional(),
          // timesteps "auto" only (src/engine/resolve-request.ts checks them against each other)
          max_timesteps: z
            .number()
            .int('parameters.max_timesteps must be a whole number')
            .min(0, 'parameters.max_timesteps must be at least 0')
            .max(limits.maxTimesteps, `parameters.max_timesteps must be at most ${limits.maxTimesteps}`)
            .optional(),
          tolerance: z
            .number()
            .gt(0, 'parameters.tolerance must be above 0')
            .max(1, 'parameters.tolerance must be at most 1')
            .optional(),
          patience: z
            .number()
            .int('parameters.patience must be a whole number')
            .min(1, 'parameters.patience must be at least 1')
            .optional(),
          confidence: z
            .number()
            .gt(0, 'parameters.confidence must be above 0')
            .max(1, 'parameters.confidence must be at most 1')
            .optional(),
        })
        .catchall(z.union([z.string(), z.number(), z.boolean()]))
        .optional(),
      inputs: z
        .array(
          z.object({
            name: z.string(),
            shape: z.array(z.number().int().min(0)),
            datatype: z.string(),
            parameters: parameters.optional(),
            data: tensorData.meta({ description: 'numbers, flat or nested up to [N][C][H][W], row-major' }),
          }),
        )
        .min(1, 'inputs must hold one tensor')
        .max(1, `inputs must hold one tensor, '${INPUT_NAME}'`),
      outputs: z
        .array(
          z.object({
            name: z.enum([...OUTPUT_NAMES, AUTO_OUTPUT, SCORE_OUTPUT]),
            parameters: parameters.optional(),
          }),
        )
        .optional(),
    })
    .strict();
}
export type InferRequest = z.infer<ReturnType<typeof inferRequestSchema>>;

export function tensorMetadata(manifest: Manifest) {
  const { channels, height, width } = manifest.input;
  return {
    inputs: [{ name: INPUT_NAME, datatype: 'FP32', shape: [-1, channels, height, width] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [-1, -1, manifest.labels.length] },
      { name: 'predictions', datatype: 'INT64', shape: [-1, -1] },
      { name: 'pcoder_errors', datatype: 'FP32', shape: [-1, -1, manifest.pcoders.length] },
      // Every output an answer may carry is listed: clients check answers against metadata.
      { name: AUTO_OUTPUT, datatype: 'INT64', shape: [-1] },
      ...(manifest.corruptionScore ? [{ name: SCORE_OUTPUT, datatype: 'FP32', shape: [-1] }] : []),
    ],
  };
}

/** When each output is in an answer that names no outputs (the model metadata's parameters). */
export function outputConditions(manifest: Manifest): Record<string, string> {
  return {
    outputs_always: OUTPUT_NAMES.join(','),
    [`output_${AUTO_OUTPUT}`]: 'when the request runs timesteps=auto (asked, or the profile default)',
    ...(manifest.corruptionScore
      ? { [`output_${SCORE_OUTPUT}`]: 'always (the model has a calibrated score)' }
      : {}),
  };
}

/**
 * The request's images, each a Float32Array of C*H*W values. Checks name, datatype, shape
 * against the model and the batch limit, and that the data holds exactly as many finite
 * numbers as the shape says.
 */
export function imagesOf(request: InferRequest, manifest: Manifest, maxBatch: number): Float32Array[] {
  const input = request.inputs[0]!;
  if (input.name !== INPUT_NAME)
    throw new ProtocolError(`unknown input '${input.name}': this model's input is '${INPUT_NAME}'`);
  if (input.datatype !== 'FP32')
    throw new ProtocolError(`input datatype must be FP32 (preprocessed pixels), got ${input.datatype}`);
  const { channels, height, width } = manifest.input;
  const expected = [channels, height, width];
  const shape = input.shape;
  const sample = shape.length === 4 ? shape.slice(1) : shape;
  if ((shape.length !== 3 && shape.length !== 4) || sample.some((d, k) => d !== expected[k]))
    throw new ProtocolError(
      `input shape must be [N, ${expected.join(', ')}] or [${expected.join(', ')}], got [${shape.join(', ')}]`,
    );
  const batch = shape.length === 4 ? shape[0]! : 1;
  if (batch < 1 || batch > maxBatch)
    throw new ProtocolError(`batch size must be between 1 and ${maxBatch} (BATCH_MAX_SIZE), got ${batch}`);

  const size = channels * height * width;
  const flat = new Float32Array(batch * size);
  let count = 0;
  const fill = (v: TensorData): void => {
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new ProtocolError('input data must be finite numbers');
      if (count < flat.length) flat[count] = v;
      count++;
    } else for (const item of v) fill(item);
  };
  for (const item of input.data) fill(item);
  if (count !== flat.length)
    throw new ProtocolError(
      `input data holds ${count} values, shape [${shape.join(', ')}] needs ${flat.length}`,
    );
  return Array.from({ length: batch }, (_, n) => flat.subarray(n * size, (n + 1) * size));
}

/**
 * The protocol's output tensors for a batch of classifications, from what the engine computed:
 * probabilities are the softmax of each timestep's logits, predictions their argmax, and the
 * errors e_i(t) as they came.
 */
export function outputsOf(
  results: readonly Classification[],
  manifest: Manifest,
  wanted: readonly OutputName[] = OUTPUT_NAMES,
) {
  const batch = results.length;
  // Anytime samples stop at their own timesteps: each is padded with its last step.
  const steps = Math.max(...results.map((r) => r.outputs.length));
  const classes = manifest.labels.length;
  const pcoders = manifest.pcoders.length;
  const outputs = results.flatMap((r) =>
    Array.from({ length: steps }, (_, t) => r.outputs[Math.min(t, r.outputs.length - 1)]!),
  );
  const tensors = {
    probabilities: () => ({
      datatype: 'FP32',
      shape: [batch, steps, classes],
      data: outputs.flatMap((o) => Array.from(softmax(o.logits))),
    }),
    predictions: () => ({
      datatype: 'INT64',
      shape: [batch, steps],
      data: outputs.map((o) => argmax(o.logits)),
    }),
    pcoder_errors: () => ({
      datatype: 'FP32',
      shape: [batch, steps, pcoders],
      data: outputs.flatMap((o) => Array.from(o.errors)),
    }),
    timesteps: () => ({ datatype: 'INT64', shape: [batch], data: results.map((r) => r.timesteps) }),
    corruption_score: () => ({
      datatype: 'FP32',
      shape: [batch],
      data: results.map((r) => r.corruptionScore ?? Number.NaN),
    }),
  } satisfies Record<OutputName, () => object>;
  return wanted.map((name) => ({ name, ...tensors[name]() }));
}
