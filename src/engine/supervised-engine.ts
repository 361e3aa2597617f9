/**
 * An engine worker that is noticed when it dies and replaced. A worker can die of an uncaught
 * exception, of running out of memory, of a native fault that ends only its thread, or hang;
 * the process itself stays up. Left alone, such a process would answer every classification
 * with an error while its probes said all is well. Supervised:
 *
 * - the requests the worker held are answered 503 with Retry-After (WorkerEngine does that);
 * - the engine says it is restarting, so /readyz turns 503 at once;
 * - a new worker loads and verifies the model as at start-up, after an exponential backoff
 *   between failed attempts; once it is up, the engine is ready again;
 * - when no worker can be started within the attempts or the time allowed, or the worker keeps
 *   dying (more than `maxRestarts` deaths in ten minutes), the engine has failed: the server
 *   then fails its liveness probe and exits non-zero after draining.
 */
import type { EngineResult, StepStats } from './batch-scheduler.js';
import { errors } from '../errors.js';
import type { Manifest } from '../model/manifest.js';
import type { Logger } from '../model/onnx-backend.js';
import type { EngineSettings, EngineStatus, InferenceEngine } from './inference-engine.js';
import type { EngineRequest } from './engine-request.js';
import type { BatchChoice } from './batch-tuning.js';
import { WorkerEngine, type WorkerOptions } from './worker-engine.js';
import type { FaultKind } from './worker-protocol.js';

export interface SupervisionOptions extends WorkerOptions {
  /** start attempts after one death before giving up */
  restartAttempts: number;
  /** longest time from a death to a ready worker before giving up */
  restartTimeoutMs: number;
  /** deaths allowed in any ten minutes; one more is a crash loop, and the engine gives up */
  maxRestarts: number;
  /** a restart has begun (`lost`: requests answered 503) */
  onDeath?: (cause: Error, lost: number) => void;
  /** a new worker is ready, `ms` after the death */
  onRestarted?: (ms: number) => void;
  /** no worker could be had: the service cannot go on */
  onGiveUp?: (reason: string) => void;
}

export const CRASH_LOOP_WINDOW_MS = 10 * 60_000;

/** Wait before start attempt `k` (0-based) after a death: none, then 250 ms doubling to 8 s. */
export const restartBackoffMs = (attempt: number) =>
  attempt === 0 ? 0 : Math.min(8000, 250 * 2 ** (attempt - 1));

export class SupervisedEngine implements InferenceEngine {
  readonly manifest: Manifest;
  readonly providers: readonly string[];
  /** chosen by the first worker; workers started after a death reuse it rather than measure */
  readonly batch: BatchChoice;
  readonly #settings: EngineSettings;
  readonly #logLevel: string;
  readonly #options: SupervisionOptions;
  readonly #log: Logger;
  #worker: WorkerEngine | undefined;
  #status: EngineStatus = 'ready';
  #closing = false;
  #onStep: ((stats: StepStats) => void) | undefined;
  readonly #deaths: number[] = [];

  private constructor(
    worker: WorkerEngine,
    settings: EngineSettings,
    logLevel: string,
    options: SupervisionOptions,
    log: Logger,
  ) {
    this.manifest = worker.manifest;
    this.providers = worker.providers;
    this.batch = worker.batch;
    this.#settings = { ...settings, chosenBatch: worker.batch };
    this.#logLevel = logLevel;
    this.#options = options;
    this.#log = log;
    this.#adopt(worker);
  }

  static async start(
    settings: EngineSettings,
    logLevel: string,
    options: SupervisionOptions,
    log: Logger,
  ): Promise<SupervisedEngine> {
    const worker = await WorkerEngine.start(settings, logLevel, options);
    return new SupervisedEngine(worker, settings, logLevel, options, log);
  }

  get status(): EngineStatus {
    return this.#status;
  }

  get onStep(): ((stats: StepStats) => void) | undefined {
    return this.#onStep;
  }

  set onStep(fn: ((stats: StepStats) => void) | undefined) {
    this.#onStep = fn;
    if (this.#worker) this.#worker.onStep = fn;
  }

  get inTransit(): number {
    return this.#worker?.inTransit ?? 0;
  }

  submit(job: EngineRequest): Promise<EngineResult> {
    if (!this.#worker || this.#status !== 'ready')
      return Promise.reject(errors.engineRestarting(this.manifest.name));
    return this.#worker.submit(job);
  }

  /** For tests and rehearsals only (ENGINE_FAULTS=1). */
  injectFault(kind: FaultKind): void {
    this.#worker?.injectFault(kind);
  }

  #adopt(worker: WorkerEngine): void {
    worker.onStep = this.#onStep;
    worker.onDeath = (cause, lost) => void this.#restart(cause, lost);
    this.#worker = worker;
  }

  async #restart(cause: Error, lost: number): Promise<void> {
    const diedAt = performance.now();
    this.#worker = undefined;
    if (this.#closing) return;
    this.#status = 'restarting';
    this.#log.error(
      { model: this.manifest.name, err: cause, lost },
      `engine of ${this.manifest.name} died (${cause.message}): ${lost} requests answered 503, restarting`,
    );
    this.#options.onDeath?.(cause, lost);
    const now = Date.now();
    this.#deaths.push(now);
    while (this.#deaths[0]! < now - CRASH_LOOP_WINDOW_MS) this.#deaths.shift();
    if (this.#deaths.length > this.#options.maxRestarts)
      return this.#giveUp(
        `${this.#deaths.length} deaths in ten minutes, over ENGINE_MAX_RESTARTS (${this.#options.maxRestarts})`,
      );

    const { restartAttempts, restartTimeoutMs } = this.#options;
    for (let attempt = 0; attempt < restartAttempts; attempt++) {
      const wait = restartBackoffMs(attempt);
      if (performance.now() - diedAt + wait > restartTimeoutMs) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.#closing) return;
      try {
        const worker = await WorkerEngine.start(this.#settings, this.#logLevel, this.#options);
        if (this.#closing) return void (await worker.close());
        this.#adopt(worker);
        this.#status = 'ready';
        const ms = performance.now() - diedAt;
        this.#log.info(
          { model: this.manifest.name, ms: Math.round(ms), attempt: attempt + 1 },
          `engine of ${this.manifest.name} restarted`,
        );
        this.#options.onRestarted?.(ms);
        return;
      } catch (err) {
        this.#log.warn({ model: this.manifest.name, err, attempt: attempt + 1 }, 'engine restart failed');
      }
    }
    this.#giveUp(`no engine could be started within ${restartAttempts} attempts and ${restartTimeoutMs} ms`);
  }

  #giveUp(reason: string): void {
    this.#status = 'failed';
    this.#log.error({ model: this.manifest.name }, `engine of ${this.manifest.name} gave up: ${reason}`);
    this.#options.onGiveUp?.(reason);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#worker?.close();
  }
}
