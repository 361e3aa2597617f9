/**
 * What each setting means, beside the schema in config.ts: the configuration reference
 * (docs/reference/configuration.md) is generated from the two (npm run docs:config), and a test
 * fails when the committed page is not what they generate or a setting has no entry here.
 */
export const CONFIG_GROUPS = {
  server: 'Server',
  models: 'Models and requests',
  engine: 'Engine',
  limits: 'Limits',
  security: 'Security',
  supervision: 'Supervision',
} as const;

export interface SettingDoc {
  group: keyof typeof CONFIG_GROUPS;
  /** what the default is, where the value alone would not say (a path, "unset") */
  defaultText?: string;
  meaning: string;
}

export const CONFIG_DOCS: Record<string, SettingDoc> = {
  PORT: { group: 'server', meaning: 'TCP port' },
  GRPC_PORT: {
    group: 'server',
    meaning: 'TCP port of the Open Inference Protocol over gRPC and of `grpc.health.v1`; `0` turns gRPC off',
  },
  HOST: { group: 'server', meaning: 'interface to listen on' },
  LOG_LEVEL: {
    group: 'server',
    meaning: 'pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace`, `silent`',
  },
  SHUTDOWN_DRAIN_MS: {
    group: 'server',
    meaning:
      'on SIGTERM/SIGINT, how long in-flight requests may take before the process exits anyway (exit 1)',
  },
  STRICT_READINESS: {
    group: 'server',
    meaning:
      '`true`: `/readyz` is ready only when every model is; `false`: while at least one is (see `/readyz` in the HTTP reference)',
  },
  NODE_ENV: {
    group: 'server',
    defaultText: '(unset)',
    meaning:
      '`production` (the image sets it): a variable that looks like one of these but is not (`MODELDIR`) stops the start-up instead of a warning, and `ENGINE_FAULTS` is refused',
  },
  MODEL_DIR: {
    group: 'models',
    defaultText: 'the shipped `models/fashion-pc`',
    meaning:
      'a model directory (a `manifest.json` and its graphs), or a repository: a directory of model directories, all served',
  },
  DEFAULT_MODEL: {
    group: 'models',
    defaultText: '(the first model by directory name)',
    meaning: 'the model a request that names none gets, by model name',
  },
  MODEL_CONTROL: {
    group: 'models',
    meaning:
      '`explicit`: the repository API (`POST /v2/repository/index`, `.../models/{name}/load`, `/unload`) loads, reloads and unloads models of `MODEL_DIR` while serving; needs `API_KEYS` ([docs](../open-inference.md#the-model-repository-loads-without-a-restart))',
  },
  MODEL_MEMORY_BUDGET_MB: {
    group: 'models',
    defaultText: '`0` (no budget)',
    meaning:
      "refuse to start when the models' estimated memory (1.2 \u00d7 their graph files + 120 MB each, + 50 MB each with engine processes) exceeds it",
  },
  DEFAULT_TIMESTEPS: {
    group: 'models',
    defaultText: '(unset)',
    meaning:
      "timesteps when a request does not say, for every profile: a number, or `auto` (every profile runs until its dynamics settle, to its cap); unset: `auto` where the profile's calibration chose it, else its recommended timesteps, or 8",
  },
  MAX_TIMESTEPS: {
    group: 'models',
    meaning:
      "largest `timesteps` a request may ask for; it also lowers a profile's calibrated `auto` cap (`/models` shows the cap in force, and `calibratedMaxTimesteps` when lowered)",
  },
  AUTO_MAX_TIMESTEPS: {
    group: 'models',
    meaning:
      'cap of a `timesteps=auto` request that names none, on a profile without a calibrated one (never above `MAX_TIMESTEPS`)',
  },
  DEFAULT_TOPK: { group: 'models', meaning: 'classes listed per timestep when a request does not say' },
  EXECUTION_PROVIDERS: {
    group: 'engine',
    meaning:
      'onnxruntime providers in order of preference, e.g. `cuda,cpu`; one that cannot load a graph is logged and the next tried',
  },
  GPU_REQUIRED: {
    group: 'engine',
    meaning:
      '`true`: refuse to start when the CUDA provider cannot load every graph, instead of falling back to the CPU with a warning',
  },
  ORT_INTRA_OP_THREADS: {
    group: 'engine',
    meaning: 'threads per onnxruntime session; 0 lets onnxruntime choose',
  },
  ORT_GRAPH_OPTIMIZATION: {
    group: 'engine',
    meaning: 'onnxruntime graph optimisation: `disabled`, `basic`, `extended`, `all`',
  },
  ORT_CPU_MEM_ARENA: { group: 'engine', meaning: "onnxruntime's CPU memory arena" },
  BATCH_MAX_SIZE: {
    group: 'engine',
    meaning:
      "most samples the engine steps together: `auto` measures each model's throughput at load (1, 2, 4 ... 64 samples, on the graphs, threads and provider that serve) and keeps the largest size within 10% of the best (the measurement's noise on two shared cores), or uses the curve `npm run tune --write` recorded for this machine; a smaller batch on that curve's plateau counts as full (several timesteps a call) when it holds every request in hand lately; a number fixes it, `1` turns batching off",
  },
  BATCH_TUNE_BUDGET_MS: {
    group: 'engine',
    meaning: 'how long `auto` may measure at load (size 1 is always measured; `/readyz` is 503 meanwhile)',
  },
  BATCH_MAX_DELAY_MS: {
    group: 'engine',
    meaning: 'how long an idle engine waits for more requests before starting a batch (0: start at once)',
  },
  CONTINUOUS_BATCHING: {
    group: 'engine',
    meaning: 'let queued requests join a running batch at the next timestep boundary',
  },
  MAX_QUEUE: {
    group: 'engine',
    meaning: 'requests waiting for the engine before more are refused with 503 (0: no bound)',
  },
  ENGINE_STEPS_PER_CALL: {
    group: 'engine',
    meaning:
      "most timesteps one onnxruntime call computes, through the model's loop graph (1: one per call, through the step graph, which is then opened instead)",
  },
  ENGINE_MULTI_STEP: {
    group: 'engine',
    meaning:
      'which batches take several timesteps per call: `full` (only a full batch of fixed-`T` requests, at the cap or, with `BATCH_MAX_SIZE=auto`, at a plateau size holding every request in hand lately) or `always` (any batch: more throughput, later admission)',
  },
  BODY_LIMIT_BYTES: {
    group: 'limits',
    defaultText: '`10485760` (10 MiB)',
    meaning: 'largest accepted image body or file part (`/classify`)',
  },
  JSON_BODY_LIMIT_BYTES: {
    group: 'limits',
    defaultText: '`1048576` (1 MiB)',
    meaning: 'largest body on every other route',
  },
  REQUEST_TIMEOUT_MS: {
    group: 'limits',
    meaning:
      "from the request's headers to its answer: a body not in by then is a 408, an answer not ready is a 504, an answer not taken is cut (0: no limit)",
  },
  HEADERS_TIMEOUT_MS: {
    group: 'limits',
    meaning:
      "time for a request's headers to arrive, from its first byte (a JSON 408, then the connection closes)",
  },
  KEEP_ALIVE_TIMEOUT_MS: {
    group: 'limits',
    meaning:
      'how long an idle keep-alive connection stays open; above the 60 s idle timeout of common load balancers',
  },
  EVENT_LOOP_MAX_DELAY_MS: {
    group: 'limits',
    meaning:
      'event-loop lag above which requests are shed with 503 (`/healthz` and `/metrics` still answer; 0: off)',
  },
  API_KEYS: {
    group: 'security',
    defaultText: '(none)',
    meaning:
      'comma-separated keys of at least 16 characters; when set, every route but the probes, `/metrics`, the page and the API docs needs one',
  },
  CORS_ORIGINS: {
    group: 'security',
    defaultText: '(none: CORS off)',
    meaning:
      'comma-separated origins (`https://app.example.com`) allowed to call the API from a browser, or `*`',
  },
  ENGINE_WORKER: {
    group: 'supervision',
    meaning: 'run the engine in a worker (`false`: on the HTTP thread, for debugging)',
  },
  ENGINE_ISOLATION: {
    group: 'supervision',
    meaning:
      'what the worker is: `process` (a child process) or `thread` (a worker thread); see the Supervision section of the HTTP reference',
  },
  ENGINE_WATCHDOG_MS: {
    group: 'supervision',
    meaning:
      'a worker that has work and sends nothing for this long is hung, and replaced like a dead one (0: off); keep it above the slowest step',
  },
  ENGINE_RESTART_ATTEMPTS: {
    group: 'supervision',
    meaning: 'start attempts after a worker dies, with backoff 0, 250, 500 ms ... up to 8 s',
  },
  ENGINE_RESTART_TIMEOUT_MS: { group: 'supervision', meaning: 'longest time from a death to a ready worker' },
  ENGINE_MAX_RESTARTS: {
    group: 'supervision',
    meaning:
      'worker deaths allowed in any ten minutes; past any of these three limits `/healthz` answers 503 and the process exits 1 after draining',
  },
  ENGINE_FAULTS: {
    group: 'supervision',
    meaning:
      '`1`: SIGUSR2 makes every engine worker throw, to rehearse a death (tests and drills only; refused with `NODE_ENV=production`)',
  },
  ENGINE_STEP_DELAY_MS: {
    group: 'supervision',
    meaning:
      'with `ENGINE_FAULTS=1` only: every model call blocks its thread this many ms longer, standing in for a slow model (tests and benchmarks of the hand-off to the engine)',
  },
  ENGINE_STAND_IN: {
    group: 'supervision',
    meaning:
      "with `ENGINE_FAULTS=1` only: `true` runs none of the model's graphs; each call gathers the batch's images, waits `ENGINE_STEP_DELAY_MS` without using a core and answers meaningless numbers: a stand-in for a GPU, to measure what this host can feed one (`npm run bench:handoff`)",
  },
};
