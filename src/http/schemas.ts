/**
 * The zod schemas of our own routes' requests and responses. Requests are validated with
 * them; responses are described by them in the OpenAPI document (src/http/openapi.ts), and the
 * route tests parse real responses with them, so the document cannot drift from the code.
 */
import { z } from 'zod';
import { inputSpec } from '../model/manifest.js';
import { choiceParam, integerParam } from './query.js';

export interface QueryLimits {
  maxTimesteps: number;
  /** the model's number of classes; unknown while it loads */
  classes?: number;
  /** the model's profile names; unknown while it loads */
  profiles?: readonly string[];
  defaultProfile?: string;
  defaultTopk: number;
  /** the models served; unknown while they load */
  models?: readonly string[];
}

export function classifyQuerySchema(l: QueryLimits) {
  const classes = l.classes ?? 1024;
  const profile = (
    l.profiles ? choiceParam('profile', l.profiles).meta({ enum: [...l.profiles] }) : z.string()
  ).meta({
    description:
      "hyperparameter profile (GET /models lists the model's profiles); the model's default profile if absent",
  });
  return z
    .object({
      timesteps: integerParam('timesteps', 0, l.maxTimesteps).optional().meta({
        description:
          "timesteps of predictive-coding dynamics after the feedforward pass (t = 0); the profile's recommended timesteps if absent",
      }),
      topk: integerParam('topk', 1, classes)
        .default(Math.min(l.defaultTopk, classes))
        .meta({ description: 'classes listed per timestep' }),
      profile: l.defaultProfile ? profile.default(l.defaultProfile) : profile.optional(),
      model: modelParam(l.models),
    })
    .strict();
}

/** `model=`: which of the served models runs the request; the default model if absent. */
export function modelParam(models?: readonly string[]) {
  return z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'model must be given once' : 'model must be a string'),
    })
    .min(1, 'model must not be empty')
    .optional()
    .meta({
      description: 'the model to run (GET /models lists them); the default model if absent',
      ...(models ? { enum: [...models] } : {}),
    });
}

/** Only the `model` parameter of a query, read before the model's own schema applies. */
export const modelQuerySchema = z.looseObject({ model: modelParam() });

export const errorBodySchema = z.object({
  statusCode: z.number().int(),
  error: z.string().meta({ description: 'the HTTP reason phrase' }),
  code: z.string().optional().meta({ description: 'stable error code, PREDIFY_ERR_*: see the README' }),
  message: z.string(),
});

const classScore = z.object({ label: z.string(), index: z.number().int(), probability: z.number() });

export const stepSchema = z.object({
  t: z.number().int(),
  label: z.string(),
  index: z.number().int(),
  confidence: z.number(),
  topk: z.array(classScore),
  errors: z.record(z.string(), z.number()).meta({ description: "each PCoder's prediction error e_i(t)" }),
});

const prediction = z.object({ label: z.string(), index: z.number().int(), confidence: z.number() });
const timings = z.object({ decodeMs: z.number(), queueMs: z.number(), inferenceMs: z.number() });

export const classificationSchema = z.object({
  model: z.string(),
  profile: z.string(),
  timesteps: z.number().int(),
  prediction,
  steps: z.array(stepSchema),
  timings,
});

/** The final event of a stream: the classification without its steps (they were streamed). */
export const streamResultSchema = classificationSchema.omit({ steps: true });

const hyperparameters = z.object({ beta: z.number(), lambda: z.number(), alpha: z.number() });

export const modelsSchema = z.object({
  models: z.array(
    z.object({
      name: z.string(),
      default: z.boolean().meta({ description: 'the model a request that names none gets' }),
      description: z.string(),
      input: inputSpec,
      labels: z.array(z.string()),
      gradientScaling: z.boolean(),
      pcoders: z.array(
        z.object({
          name: z.string(),
          layer: z.string(),
          shape: z.array(z.number().int()),
          hyperparameters,
          gradientScale: z.number(),
        }),
      ),
      defaultProfile: z.string(),
      profiles: z.array(
        z.object({
          name: z.string(),
          description: z.string().optional(),
          hyperparameters: z.array(hyperparameters),
          recommendedTimesteps: z.number().int().nullable(),
          defaultTimesteps: z.number().int(),
          calibration: z.unknown().optional().meta({ description: 'how the profile was chosen' }),
        }),
      ),
      timesteps: z.object({ default: z.number().int(), max: z.number().int() }),
      executionProviders: z.array(z.string()),
    }),
  ),
});

export const healthSchema = z.object({ status: z.enum(['ok', 'failed']) });
export const readySchema = z.object({
  status: z.enum(['ready', 'loading', 'closing', 'overloaded', 'restarting']),
  model: z.string().optional().meta({ description: 'the default model' }),
  models: z.array(z.string()).optional().meta({ description: 'every model served' }),
});

// The Open Inference Protocol's bodies (requests: src/protocol/open-inference.ts).
export const v2ErrorSchema = z.object({ error: z.string() });
export const v2ServerSchema = z.object({
  name: z.string(),
  version: z.string(),
  extensions: z.array(z.string()),
});
export const v2LiveSchema = z.object({ live: z.boolean() });
export const v2ReadySchema = z.object({ ready: z.boolean() });
export const v2ModelReadySchema = z.object({ name: z.string(), ready: z.boolean() });
const tensorMeta = z.object({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) });
export const v2ModelSchema = z.object({
  name: z.string(),
  versions: z.array(z.string()),
  platform: z.string(),
  inputs: z.array(tensorMeta),
  outputs: z.array(tensorMeta),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
});
export const v2InferResponseSchema = z.object({
  model_name: z.string(),
  id: z.string().optional(),
  parameters: z.object({ timesteps: z.number().int(), profile: z.string() }),
  outputs: z.array(tensorMeta.extend({ data: z.array(z.number()) })),
});
