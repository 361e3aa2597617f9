/**
 * The KServe Open Inference Protocol (V2): request schemas, model metadata and the names of
 * tensors, shared by its REST form (src/routes/v2.ts) and its gRPC form (src/grpc/). No transport
 * here.
 *
 * A model takes one input tensor, `input`, in one of two forms:
 *   FP32   [N, C, H, W] or [C, H, W]  pixels already preprocessed (normalised like /classify does);
 *                                      the form listed in the model's metadata
 *   BYTES  [N] (or [N, 1])            encoded images (PNG, JPEG, WebP, GIF, TIFF), decoded and
 *                                      preprocessed by the same code as /classify
 * It answers with up to three outputs, all indexed by timestep t = 0..T:
 *   probabilities  FP32  [N, T+1, classes]  softmax of the head's logits
 *   predictions    INT64 [N, T+1]           the most probable class
 *   pcoder_errors  FP32  [N, T+1, PCoders]  each PCoder's prediction error e_i(t)
 * With timesteps "auto", each sample stops when its dynamics settle: T is the latest stop of
 * the batch, a sample that stopped earlier repeats its last step, and a fourth output says
 * where each stopped:
 *   timesteps      INT64 [N]                the last timestep computed for each sample
 * A model whose manifest has a calibrated corruption score also answers, by default:
 *   corruption_score  FP32 [N]              how unlike clean data each input looks (t = 0)
 * and every model the head's exact logits:
 *   logits         FP32  [N, T+1, classes]  what probabilities are the softmax of
 * A request that names no outputs gets all of them, as the protocol says it should.
 */
import { z } from 'zod';
import type { Classifier } from '../engine/classifier.js';
import type { ModelSet } from '../engine/model-set.js';
import { errors } from '../errors.js';
import { modelHash, type Manifest } from '../model/manifest.js';
import { IMAGE_MEDIA_TYPES } from '../image/preprocess.js';

/** The protocol's extensions this server implements (GET /v2, gRPC ServerMetadata). */
export function extensionsFor(modelControl: 'none' | 'explicit'): string[] {
  return ['binary_tensor_data', ...(modelControl === 'explicit' ? ['model_repository'] : [])];
}

export const INPUT_NAME = 'input';
export const OUTPUT_NAMES = ['probabilities', 'predictions', 'pcoder_errors'] as const;
/** Also given, by default, for timesteps "auto": each sample's last timestep computed. */
export const AUTO_OUTPUT = 'timesteps';
/** Given, by default, by a model with a calibrated corruption score. */
export const SCORE_OUTPUT = 'corruption_score';
/** The head's logits, exact (what studies over a fleet replay). */
export const LOGITS_OUTPUT = 'logits';
export type OutputName =
  (typeof OUTPUT_NAMES)[number] | typeof AUTO_OUTPUT | typeof SCORE_OUTPUT | typeof LOGITS_OUTPUT;

/**
 * The outputs of a request that names none: all this model and request have, as the protocol
 * says ("if no outputs are specified, all outputs are returned"), the logits its metadata
 * lists included.
 */
export function defaultOutputs(manifest: Manifest, anytime: boolean): OutputName[] {
  const names: OutputName[] = [...OUTPUT_NAMES];
  if (anytime) names.push(AUTO_OUTPUT);
  if (manifest.corruptionScore) names.push(SCORE_OUTPUT);
  names.push(LOGITS_OUTPUT);
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
 * Numbers (FP32) or strings (BYTES, base64 in JSON), or arrays of them nested at most
 * MAX_NESTING deep: a tensor's data, flat or nested, in row-major order. Bounded, not
 * recursive, so that a body of ten thousand '[' is a 400 and never a stack overflow.
 */
export type JsonTensorData = number | string | JsonTensorData[];
const MAX_NESTING = 4;
function tensorValues(depth: number): z.ZodType<JsonTensorData> {
  const error = `must be numbers or base64 strings, in arrays nested at most ${MAX_NESTING} deep`;
  const leaf = z.union([z.number(), z.string()], { error });
  return depth === 0 ? leaf : z.union([z.number(), z.string(), z.array(tensorValues(depth - 1))], { error });
}
const tensorData = z.array(tensorValues(MAX_NESTING - 1));

/** The request body; the model's own limits (its profiles, its input shape) are checked on it later. */
export function inferRequestSchema(limits: { maxTimesteps: number }) {
  return z
    .object({
      id: z.string().max(256).optional(),
      // Some clients repeat the URL's model in the body (Triton's documented examples do).
      model_name: z.string().optional(),
      model_version: z.string().optional(),
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
            // Absent when the tensor travels as binary data after the JSON (binary_data_size).
            data: tensorData
              .meta({
                description:
                  'FP32: numbers, flat or nested up to [N][C][H][W], row-major; BYTES: base64 strings, one an image',
              })
              .optional(),
          }),
        )
        .min(1, 'inputs must hold one tensor')
        .max(1, `inputs must hold one tensor, '${INPUT_NAME}'`),
      outputs: z
        .array(
          z.object({
            name: z.enum([...OUTPUT_NAMES, AUTO_OUTPUT, SCORE_OUTPUT, LOGITS_OUTPUT]),
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
      { name: LOGITS_OUTPUT, datatype: 'FP32', shape: [-1, -1, manifest.labels.length] },
    ],
  };
}

/** The input's forms: the metadata lists the first, the default; the parameters name both. */
export function inputForms(manifest: Manifest): Record<string, string> {
  const { channels, height, width } = manifest.input;
  const formats = IMAGE_MEDIA_TYPES.map((t) => t.replace('image/', '')).join(', ');
  return {
    input_form_default: 'FP32',
    input_forms:
      `FP32 [N, ${channels}, ${height}, ${width}]: preprocessed pixels (the default, listed in inputs); ` +
      `BYTES [N]: encoded images (${formats}), each decoded and preprocessed as /classify does`,
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
    [`output_${LOGITS_OUTPUT}`]: 'when the request names it in outputs',
  };
}

/** A model's metadata as the protocol gives it; `parameters` become gRPC's string properties. */
export function modelMetadata(
  manifest: Manifest,
  served: { profiles: readonly string[]; defaultTimesteps: number | 'auto'; maxTimesteps: number },
) {
  return {
    name: manifest.name,
    versions: [manifest.modelVersion],
    platform: 'predify_onnxruntime',
    ...tensorMetadata(manifest),
    parameters: {
      timesteps_default: served.defaultTimesteps,
      timesteps_max: served.maxTimesteps,
      profile_default: manifest.defaultProfile,
      profiles: served.profiles.join(','),
      labels: manifest.labels.join(','),
      pcoders: manifest.pcoders.map((pc) => pc.name).join(','),
      model_hash: modelHash(manifest),
      ...inputForms(manifest),
      ...outputConditions(manifest),
    } as Record<string, string | number>,
  };
}

/**
 * The model called `name` (at `version`, when named), for REST and gRPC alike: 404 for one
 * this server does not serve, 503 while the models load.
 */
export function servedModel(models: ModelSet | undefined, name: string, version?: string): Classifier {
  if (!models) throw errors.notReady();
  const classifier = models.get(name);
  checkVersion(classifier.manifest, version);
  return classifier;
}

/**
 * The model a versioned request names is served only at its manifest's version: another is
 * refused rather than answered by a different model.
 */
export function checkVersion(manifest: Manifest, version: string | undefined): void {
  if (version === undefined || version === '' || version === manifest.modelVersion) return;
  throw new ProtocolError(
    `model ${manifest.name} has no version ${version}: this server serves version ${manifest.modelVersion}`,
    404,
  );
}
