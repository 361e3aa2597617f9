/**
 * The service's configuration: every environment variable, validated once at start-up by a zod
 * schema with its default and range (docs.ts holds the meanings; reference.ts writes the page).
 */
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { RequestDefaults } from '../engine/resolve-request.js';
import { describeLookalikes, lookalikes } from './lookalikes.js';
import { errors } from '../errors.js';

/** The default model ships with the package, next to src/ and dist/. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/fashion-pc', import.meta.url));

export const EXECUTION_PROVIDERS = ['cuda', 'cpu'] as const;

const wholeNumber = (name: string, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const integer = (name: string, min: number, max: number, fallback: number) =>
  wholeNumber(name, min, max).default(fallback);

/** A comma-separated list; blanks around and between items are dropped. */
const commaList = () =>
  z.string().transform((s) =>
    s
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== ''),
  );

const schema = z
  .object({
    PORT: integer('PORT', 0, 65535, 8080),
    // The Open Inference Protocol over gRPC, beside HTTP in the same process; 0 turns it off.
    GRPC_PORT: integer('GRPC_PORT', 0, 65535, 8081),
    HOST: z.string().min(1).default('0.0.0.0'),
    MODEL_DIR: z.string().min(1).default(DEFAULT_MODEL_DIR),
    // Unset: the first model of the repository by directory name.
    DEFAULT_MODEL: z.string().min(1).optional(),
    // `explicit`: the repository API (POST /v2/repository/...) loads, reloads and unloads the
    // models of MODEL_DIR while serving; `none`: the models are those found at start-up.
    MODEL_CONTROL: z.enum(['none', 'explicit']).default('none'),
    MODEL_MEMORY_BUDGET_MB: integer('MODEL_MEMORY_BUDGET_MB', 0, 10_000_000, 0),
    EXECUTION_PROVIDERS: commaList()
      .transform((list) => list.map((p) => p.toLowerCase()))
      .pipe(z.array(z.enum(EXECUTION_PROVIDERS)).min(1))
      .default(['cpu']),
    GPU_REQUIRED: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    ORT_INTRA_OP_THREADS: integer('ORT_INTRA_OP_THREADS', 0, 256, 0),
    ORT_GRAPH_OPTIMIZATION: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
    ORT_CPU_MEM_ARENA: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    BODY_LIMIT_BYTES: integer('BODY_LIMIT_BYTES', 1024, 1 << 30, 10 * 1024 * 1024),
    JSON_BODY_LIMIT_BYTES: integer('JSON_BODY_LIMIT_BYTES', 1024, 1 << 30, 1024 * 1024),
    REQUEST_TIMEOUT_MS: integer('REQUEST_TIMEOUT_MS', 0, 3_600_000, 30_000),
    HEADERS_TIMEOUT_MS: integer('HEADERS_TIMEOUT_MS', 100, 600_000, 10_000),
    // Longer than the idle timeout of common load balancers (60 s), so that they, not we,
    // close idle connections and never send on one we are closing.
    KEEP_ALIVE_TIMEOUT_MS: integer('KEEP_ALIVE_TIMEOUT_MS', 100, 3_600_000, 72_000),
    EVENT_LOOP_MAX_DELAY_MS: integer('EVENT_LOOP_MAX_DELAY_MS', 0, 60_000, 1000),
    // Keys are never echoed back in errors: only their length is checked.
    API_KEYS: commaList()
      .pipe(z.array(z.string().min(16, 'each API key must be at least 16 characters')))
      .default([]),
    CORS_ORIGINS: commaList()
      .pipe(
        z.array(
          z
            .string()
            .regex(
              /^(\*|https?:\/\/[^/\s]+)$/,
              'CORS_ORIGINS lists origins such as https://example.com, or *',
            ),
        ),
      )
      .default([]),
    // Unset: what the profile in use says (auto where its calibrated rule is the default, else
    // its recommended timesteps, else FALLBACK_TIMESTEPS). `auto`: every request that names no
    // timesteps runs until its dynamics settle, up to the profile's cap.
    DEFAULT_TIMESTEPS: z
      .union([z.literal('auto'), wholeNumber('DEFAULT_TIMESTEPS', 0, 1024)], {
        error: 'DEFAULT_TIMESTEPS must be auto or a whole number from 0 to 1024',
      })
      .optional(),
    MAX_TIMESTEPS: integer('MAX_TIMESTEPS', 0, 1024, 64),
    AUTO_MAX_TIMESTEPS: integer('AUTO_MAX_TIMESTEPS', 1, 1024, 10),
    DEFAULT_TOPK: integer('DEFAULT_TOPK', 1, 1000, 5),
    // `auto`: each engine measures its own throughput at load and keeps the largest batch size
    // within 3% of the best (src/engine/batch-tuning.ts); a number fixes it.
    BATCH_MAX_SIZE: z
      .union([z.literal('auto'), wholeNumber('BATCH_MAX_SIZE', 1, 1024)], {
        error: 'BATCH_MAX_SIZE must be auto or a whole number from 1 to 1024',
      })
      .default('auto'),
    // How long an engine may spend measuring batch sizes at load (BATCH_MAX_SIZE=auto).
    BATCH_TUNE_BUDGET_MS: integer('BATCH_TUNE_BUDGET_MS', 100, 600_000, 5000),
    BATCH_MAX_DELAY_MS: integer('BATCH_MAX_DELAY_MS', 0, 10_000, 2),
    CONTINUOUS_BATCHING: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    MAX_QUEUE: integer('MAX_QUEUE', 0, 1_000_000, 256),
    ENGINE_STEPS_PER_CALL: integer('ENGINE_STEPS_PER_CALL', 1, 1024, 8),
    ENGINE_MULTI_STEP: z.enum(['full', 'always']).default('full'),
    ENGINE_WORKER: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    ENGINE_ISOLATION: z.enum(['process', 'thread']).default('process'),
    SHUTDOWN_DRAIN_MS: integer('SHUTDOWN_DRAIN_MS', 0, 600_000, 10_000),
    ENGINE_RESTART_ATTEMPTS: integer('ENGINE_RESTART_ATTEMPTS', 1, 100, 5),
    ENGINE_RESTART_TIMEOUT_MS: integer('ENGINE_RESTART_TIMEOUT_MS', 1000, 3_600_000, 120_000),
    ENGINE_MAX_RESTARTS: integer('ENGINE_MAX_RESTARTS', 0, 1000, 10),
    // Longer than the slowest engine step: a worker silent this long while it has work is hung.
    ENGINE_WATCHDOG_MS: integer('ENGINE_WATCHDOG_MS', 0, 3_600_000, 60_000),
    ENGINE_FAULTS: z
      .enum(['0', '1'])
      .default('0')
      .transform((v) => v === '1'),
    // With ENGINE_FAULTS only: every model call blocks its thread this much longer, as a slow
    // model's would (tests and benchmarks of the hand-off to the engine).
    ENGINE_STEP_DELAY_MS: integer('ENGINE_STEP_DELAY_MS', 0, 10_000, 0),
    // With ENGINE_FAULTS only: no graph is run; each model call waits ENGINE_STEP_DELAY_MS without
    // using a core, a stand-in for a GPU, to measure what this host can feed one.
    ENGINE_STAND_IN: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    // `false`: /readyz stays ready while some models restart, as long as one is ready; requests
    // for a restarting model get 503 with Retry-After. `true`: ready only when every model is.
    STRICT_READINESS: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    NODE_ENV: z.string().optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .refine((c) => !c.GPU_REQUIRED || c.EXECUTION_PROVIDERS.includes('cuda'), {
    message: 'GPU_REQUIRED=true needs cuda in EXECUTION_PROVIDERS',
    path: ['GPU_REQUIRED'],
  })
  .refine((c) => c.ENGINE_STEP_DELAY_MS === 0 || c.ENGINE_FAULTS, {
    message:
      'ENGINE_STEP_DELAY_MS slows every model call on purpose; it needs ENGINE_FAULTS=1 (tests and drills only)',
    path: ['ENGINE_STEP_DELAY_MS'],
  })
  .refine((c) => !c.ENGINE_STAND_IN || c.ENGINE_FAULTS, {
    message:
      'ENGINE_STAND_IN answers without running the model; it needs ENGINE_FAULTS=1 (tests and benchmarks only)',
    path: ['ENGINE_STAND_IN'],
  })
  .refine((c) => !(c.ENGINE_FAULTS && c.NODE_ENV === 'production'), {
    message:
      'ENGINE_FAULTS=1 injects engine deaths for tests and rehearsals; it is refused with NODE_ENV=production',
    path: ['ENGINE_FAULTS'],
  })
  .refine((c) => c.MODEL_CONTROL !== 'explicit' || c.API_KEYS.length > 0, {
    message: 'MODEL_CONTROL=explicit needs API_KEYS: loading models is never open to anyone',
    path: ['MODEL_CONTROL'],
  })
  .refine((c) => typeof c.DEFAULT_TIMESTEPS !== 'number' || c.DEFAULT_TIMESTEPS <= c.MAX_TIMESTEPS, {
    message: 'DEFAULT_TIMESTEPS must not exceed MAX_TIMESTEPS',
    path: ['DEFAULT_TIMESTEPS'],
  });

export type Config = z.infer<typeof schema>;

/** The environment variables the service reads. */
export const CONFIG_VARIABLES = Object.keys(schema.shape);

/** Each variable's schema, for the generated reference (src/config/reference.ts). */
export const CONFIG_FIELDS: Readonly<Record<string, z.ZodType>> = schema.shape;

/** What a request that leaves something out gets. */
export function requestDefaults(config: Config): RequestDefaults {
  return {
    defaultTimesteps: config.DEFAULT_TIMESTEPS,
    maxTimesteps: config.MAX_TIMESTEPS,
    autoMaxTimesteps: Math.min(config.AUTO_MAX_TIMESTEPS, config.MAX_TIMESTEPS),
    defaultTopk: config.DEFAULT_TOPK,
  };
}

/**
 * The HTTP server's own limits. Our deadline (REQUEST_TIMEOUT_MS) starts when a request's
 * headers are in and answers in JSON; Node's request limit counts from the request's first
 * byte, so it is set a second beyond both, as the backstop for what the deadline cannot
 * answer. Node checks its limits on an interval, by default 30 s: here often enough that a
 * header timeout holds to within a quarter of itself.
 */
export function httpServerSettings(config: Config) {
  const { HEADERS_TIMEOUT_MS: headers, REQUEST_TIMEOUT_MS: request } = config;
  return {
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: request > 0 ? headers + request + 1000 : 0,
    http: {
      headersTimeout: headers,
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(headers / 4))),
    },
  };
}

/** The engine's part of the configuration. */
export function engineSettings(config: Config) {
  return {
    modelDir: config.MODEL_DIR,
    providers: config.EXECUTION_PROVIDERS,
    gpuRequired: config.GPU_REQUIRED,
    intraOpThreads: config.ORT_INTRA_OP_THREADS,
    graphOptimization: config.ORT_GRAPH_OPTIMIZATION,
    cpuMemArena: config.ORT_CPU_MEM_ARENA,
    maxBatch: config.BATCH_MAX_SIZE,
    tuneBudgetMs: config.BATCH_TUNE_BUDGET_MS,
    maxDelayMs: config.BATCH_MAX_DELAY_MS,
    continuous: config.CONTINUOUS_BATCHING,
    maxQueue: config.MAX_QUEUE,
    stepsPerCall: config.ENGINE_STEPS_PER_CALL,
    multiStep: config.ENGINE_MULTI_STEP,
    stepDelayMs: config.ENGINE_STEP_DELAY_MS,
    standIn: config.ENGINE_STAND_IN,
  };
}

/**
 * Parses the environment once; an invalid value names the variable. Under NODE_ENV=production
 * a variable that looks like one of ours but is not (MODELDIR) is refused too: elsewhere it is
 * a warning (lookalikes()).
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty variables count as unset, as in most shells' `VAR= cmd` idiom.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  if (env['NODE_ENV'] === 'production') {
    const found = lookalikes(env, CONFIG_VARIABLES);
    if (found.length > 0) throw errors.configInvalid(describeLookalikes(found));
  }
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || 'env'}: ${i.message}`).join('; ');
    throw errors.configInvalid(detail);
  }
  return parsed.data;
}
