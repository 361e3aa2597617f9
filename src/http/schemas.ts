/**
 * The zod schemas of our own routes' requests and responses. Each route names them in its
 * Fastify schema, which makes them its validator, its TypeScript types, its serializer and its
 * entry in the OpenAPI document (fastify-type-provider-zod), so none of the four can drift.
 */
import { z } from 'zod';
import { inputSpec } from '../model/manifest.js';
import { decimalParam, integerParam, stringParam, timestepsParam } from './query.js';

/**
 * The query of /classify as far as the route can check it before a model is chosen: the
 * models load after the routes are registered, so each model's own limits (its profiles, its
 * number of classes) are checked by resolveRequest, the one place every path checks them.
 */
export function classifyQuerySchema(limits: { maxTimesteps: number }) {
  return z
    .object({
      timesteps: timestepsParam(limits.maxTimesteps)
        .optional()
        .meta({
          description:
            "timesteps of predictive-coding dynamics after the feedforward pass (t = 0); the profile's recommended timesteps if absent. " +
            '`auto`: until the dynamics settle (docs/anytime.md), at most max_timesteps',
        }),
      max_timesteps: integerParam('max_timesteps', 0, limits.maxTimesteps).optional().meta({
        description:
          "with timesteps=auto: the cap; the profile's calibrated cap (else AUTO_MAX_TIMESTEPS) if absent",
      }),
      tolerance: decimalParam('tolerance', 0, 1).optional().meta({
        description:
          "with timesteps=auto: the largest relative change of a PCoder's error that counts as settled; the profile's if absent",
      }),
      patience: integerParam('patience', 1, limits.maxTimesteps).optional().meta({
        description:
          "with timesteps=auto: settled steps in a row (same top-1 class, and errors within tolerance or top-1 probability at least confidence) before stopping; the profile's if absent",
      }),
      confidence: decimalParam('confidence', 0, 1).optional().meta({
        description:
          "with timesteps=auto: a step whose unchanged top-1 class has at least this probability counts as settled whatever its errors did; the profile's (if it has one) if absent",
      }),
      topk: integerParam('topk', 0).optional().meta({
        description:
          "classes listed per timestep, at most the model's number of classes; DEFAULT_TOPK (or every class, if fewer) if absent",
      }),
      profile: stringParam('profile').optional().meta({
        description:
          "hyperparameter profile (GET /models lists each model's profiles); the model's default profile if absent",
      }),
      model: stringParam('model').min(1, 'model must not be empty').optional().meta({
        description: 'the model to run (GET /models lists them); the default model if absent',
      }),
    })
    .strict();
}
export type ClassifyQuery = z.output<ReturnType<typeof classifyQuerySchema>>;

export const errorBodySchema = z.object({
  statusCode: z.number().int(),
  error: z.string().meta({ description: 'the HTTP reason phrase' }),
  code: z
    .string()
    .optional()
    .meta({ description: 'stable error code, PREDIFY_ERR_*: see docs/reference/http-api.md' }),
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

export const stopSchema = z
  .object({
    reason: z.enum(['settled', 'cap', 'gated']).meta({
      description:
        "settled: the dynamics stopped changing; cap: the cap came first; gated: the errors at t = 0 stayed under the rule's gate, so the feedforward answer stands (docs/robustness.md)",
    }),
    gate: z.number().optional().meta({
      description:
        "the gate: iterated only when the largest signed z of ln e_i(0) (gateZ) is above it (the profile's calibrated rule)",
    }),
    gateZ: z.number().optional().meta({
      description:
        "what the gate compared: this image's largest signed z of ln e_i(0), how far its errors rise above clean images'. The corruption score is the largest |z|, so errors far below clean (blur, low contrast) give a high score and a low gateZ",
    }),
    tolerance: z.number(),
    patience: z.number().int(),
    confidence: z.number().optional(),
    maxTimesteps: z.number().int(),
    rule: z.enum(['asked', 'calibrated', 'default']).meta({
      description:
        "where tolerance and patience came from: the request, the profile's calibrated rule, or the documented default (the profile has none)",
    }),
  })
  .meta({ description: 'timesteps=auto only: why the dynamics stopped at `timesteps`, and the rule' });

export const corruptionScoreSchema = z.number().nullable().meta({
  description:
    "how unlike clean training data the input looks, from the prediction errors at t = 0: the largest of the PCoders' |z-score| of ln e_i(0) against clean validation images (0: typical; see docs/anytime.md); null when the model's manifest has no calibrated score",
});

export const classificationSchema = z.object({
  model: z.string(),
  profile: z.string(),
  timesteps: z.number().int().meta({ description: 'the last timestep computed' }),
  stop: stopSchema.optional(),
  prediction,
  corruptionScore: corruptionScoreSchema,
  steps: z.array(stepSchema),
  timings,
});

const hyperparameters = z.object({ beta: z.number(), lambda: z.number(), alpha: z.number() });

const defaultTimesteps = z.union([z.number().int(), z.literal('auto')]);

export const modelsSchema = z.object({
  models: z.array(
    z.object({
      name: z.string(),
      version: z.string().meta({ description: "the manifest's modelVersion (the protocol's model version)" }),
      hash: z.string().meta({
        description:
          'SHA-256 of what decides the answers (the manifest, its graphs by checksum; not the recorded batch choice): equal on every replica serving the same model',
      }),
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
          defaultTimesteps: defaultTimesteps.meta({
            description:
              "what a request that names no timesteps gets: a number, or auto (the profile's rule, up to its cap)",
          }),
          anytime: z
            .object({
              tolerance: z.number(),
              patience: z.number().int(),
              confidence: z.number().optional(),
              maxTimesteps: z
                .number()
                .int()
                .meta({ description: 'the cap auto runs to here: the calibrated one, within MAX_TIMESTEPS' }),
              calibratedMaxTimesteps: z
                .number()
                .int()
                .optional()
                .meta({ description: 'present when MAX_TIMESTEPS lowered the calibrated cap: what it was' }),
              default: z.boolean().meta({ description: 'requests that name no timesteps run auto' }),
            })
            .nullable()
            .meta({
              description: 'the calibrated rule of timesteps=auto; null: the documented default rule',
            }),
          calibration: z.unknown().optional().meta({ description: 'how the profile was chosen' }),
        }),
      ),
      corruptionScore: z
        .object({
          cleanQuantiles: z
            .object({ p50: z.number(), p90: z.number(), p95: z.number(), p99: z.number() })
            .nullable()
            .meta({ description: 'the score on clean validation images: thresholds to read an answer by' }),
        })
        .nullable()
        .meta({ description: 'null: the model has no calibrated corruption score, and answers carry null' }),
      timesteps: z.object({ default: defaultTimesteps, max: z.number().int() }),
      executionProviders: z.array(z.string()),
      batch: z
        .object({
          size: z.number().int().meta({ description: 'most samples the engine steps together' }),
          source: z.enum(['fixed', 'measured', 'recorded']).meta({
            description: 'BATCH_MAX_SIZE a number; measured at load (auto); recorded by npm run tune',
          }),
          curve: z
            .array(z.object({ size: z.number().int(), sampleStepsPerSecond: z.number() }))
            .meta({ description: 'throughput by batch size, as measured or recorded' }),
          stoppedAt: z.enum(['budget', 'past the peak']).optional(),
        })
        .nullable(),
    }),
  ),
});

export const healthSchema = z.object({ status: z.enum(['ok', 'failed']) });
export const readySchema = z.object({
  status: z.enum(['ready', 'loading', 'closing', 'overloaded', 'restarting']),
  model: z.string().optional().meta({ description: 'the default model' }),
  models: z.array(z.string()).optional().meta({ description: 'every model served' }),
  restarting: z
    .array(z.string())
    .optional()
    .meta({ description: 'models whose engine is being restarted: their requests get 503 meanwhile' }),
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
export const v2RepositoryIndexSchema = z.array(
  z.object({
    name: z.string(),
    version: z.string().optional(),
    state: z.enum(['READY', 'LOADING', 'UNAVAILABLE']),
    reason: z.string().optional(),
  }),
);
export const v2InferResponseSchema = z.object({
  model_name: z.string(),
  model_version: z.string(),
  id: z.string().optional(),
  parameters: z.object({
    timesteps: z
      .number()
      .int()
      .meta({ description: 'the last timestep computed (for "auto": the latest stop)' }),
    profile: z.string(),
    max_timesteps: z.number().int().optional(),
    tolerance: z.number().optional(),
    patience: z.number().int().optional(),
    confidence: z.number().optional(),
    rule: z.enum(['asked', 'calibrated', 'default']).optional(),
  }),
  outputs: z.array(tensorMeta.extend({ data: z.array(z.number()) })),
});
