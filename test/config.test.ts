import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_DIR, loadConfig } from '../src/config/config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toEqual({
      PORT: 8080,
      GRPC_PORT: 8081,
      HOST: '0.0.0.0',
      MODEL_DIR: DEFAULT_MODEL_DIR,
      MODEL_CONTROL: 'none',
      MODEL_MEMORY_BUDGET_MB: 0,
      EXECUTION_PROVIDERS: ['cpu'],
      GPU_REQUIRED: false,
      ORT_INTRA_OP_THREADS: 0,
      ORT_GRAPH_OPTIMIZATION: 'all',
      ORT_CPU_MEM_ARENA: true,
      BODY_LIMIT_BYTES: 10 * 1024 * 1024,
      JSON_BODY_LIMIT_BYTES: 1024 * 1024,
      REQUEST_TIMEOUT_MS: 30_000,
      HEADERS_TIMEOUT_MS: 10_000,
      KEEP_ALIVE_TIMEOUT_MS: 72_000,
      EVENT_LOOP_MAX_DELAY_MS: 1000,
      API_KEYS: [],
      CORS_ORIGINS: [],
      MAX_TIMESTEPS: 64,
      AUTO_MAX_TIMESTEPS: 10,
      DEFAULT_TOPK: 5,
      BATCH_MAX_SIZE: 'auto',
      BATCH_TUNE_BUDGET_MS: 5000,
      BATCH_MAX_DELAY_MS: 2,
      CONTINUOUS_BATCHING: true,
      MAX_QUEUE: 256,
      ENGINE_STEPS_PER_CALL: 8,
      ENGINE_MULTI_STEP: 'full',
      ENGINE_WORKER: true,
      ENGINE_ISOLATION: 'process',
      SHUTDOWN_DRAIN_MS: 10_000,
      ENGINE_RESTART_ATTEMPTS: 5,
      ENGINE_RESTART_TIMEOUT_MS: 120_000,
      ENGINE_MAX_RESTARTS: 10,
      ENGINE_WATCHDOG_MS: 60_000,
      ENGINE_FAULTS: false,
      ENGINE_STEP_DELAY_MS: 0,
      ENGINE_STAND_IN: false,
      STRICT_READINESS: true,
      LOG_LEVEL: 'info',
    });
  });

  it('parses execution providers in order of preference', () => {
    expect(loadConfig({ EXECUTION_PROVIDERS: 'CUDA, cpu' }).EXECUTION_PROVIDERS).toEqual(['cuda', 'cpu']);
    expect(loadConfig({}).GPU_REQUIRED).toBe(false);
    expect(loadConfig({ EXECUTION_PROVIDERS: 'cuda', GPU_REQUIRED: 'true' }).GPU_REQUIRED).toBe(true);
    expect(() => loadConfig({ GPU_REQUIRED: 'true' })).toThrow(
      /GPU_REQUIRED=true needs cuda in EXECUTION_PROVIDERS/,
    );
    expect(() => loadConfig({ EXECUTION_PROVIDERS: 'cuda', GPU_REQUIRED: 'yes' })).toThrow(/GPU_REQUIRED/);
  });

  it('splits lists of API keys and CORS origins', () => {
    const config = loadConfig({
      API_KEYS: ' first-key-0123456789 ,second-key-0123456789,',
      CORS_ORIGINS: 'https://a.example, http://localhost:3000',
    });
    expect(config.API_KEYS).toEqual(['first-key-0123456789', 'second-key-0123456789']);
    expect(config.CORS_ORIGINS).toEqual(['https://a.example', 'http://localhost:3000']);
  });

  it.each([
    [{ PORT: '-1' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ EXECUTION_PROVIDERS: 'tpu' }, /EXECUTION_PROVIDERS/],
    [{ DEFAULT_TIMESTEPS: '10', MAX_TIMESTEPS: '5' }, /DEFAULT_TIMESTEPS must not exceed MAX_TIMESTEPS/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [
      { ENGINE_STEP_DELAY_MS: '100' },
      /ENGINE_STEP_DELAY_MS slows every model call on purpose; it needs ENGINE_FAULTS=1/,
    ],
    [
      { ENGINE_STAND_IN: 'true' },
      /ENGINE_STAND_IN answers without running the model; it needs ENGINE_FAULTS=1/,
    ],
    [{ BODY_LIMIT_BYTES: '1.5' }, /BODY_LIMIT_BYTES must be a whole number/],
    [{ DEFAULT_TIMESTEPS: 'soon' }, /^[^;]*DEFAULT_TIMESTEPS must be auto or a whole number from 0 to 1024$/],
  ])('refuses %o, naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it("takes DEFAULT_TIMESTEPS=auto, the shipped profiles' own default, whatever MAX_TIMESTEPS is", () => {
    expect(loadConfig({ DEFAULT_TIMESTEPS: 'auto', MAX_TIMESTEPS: '2' }).DEFAULT_TIMESTEPS).toBe('auto');
    expect(loadConfig({ DEFAULT_TIMESTEPS: '3' }).DEFAULT_TIMESTEPS).toBe(3);
  });
});
