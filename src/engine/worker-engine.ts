/** The engine in a worker thread, seen from the HTTP thread. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { errors, ServiceError } from '../errors.js';
import type { Manifest } from '../model/manifest.js';
import type { EngineJob, EngineResult, StepStats } from './batch-scheduler.js';
import type { EngineSettings, InferenceEngine } from './inference-engine.js';
import type { SampleStep } from './predictive-step.js';
import type { FaultKind, FromWorker, ToWorker } from './worker-protocol.js';

interface Pending {
  job: EngineJob;
  steps: SampleStep[];
  resolve(result: EngineResult): void;
  reject(err: Error): void;
}

/** The compiled worker; tests run from src/ but workers need JavaScript, so they use dist/. */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'engine-worker.js');
  return path.resolve(path.dirname(here), '..', '..', 'dist', 'engine', 'engine-worker.js');
}

export interface WorkerOptions {
  /** a worker with work that has sent nothing for this long is hung, and treated as dead (0: never) */
  watchdogMs?: number;
}

export class WorkerEngine implements InferenceEngine {
  readonly manifest: Manifest;
  readonly providers: readonly string[];
  onStep: ((stats: StepStats) => void) | undefined;
  /** called once if the worker dies (not when it is closed), after its requests were answered */
  onDeath: ((cause: Error, lost: number) => void) | undefined;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #dead: Error | undefined;
  #closing = false;
  /** what the worker said it is dying of, before it exits */
  #fatal: string | undefined;
  #lastHeard = performance.now();
  readonly #watchdog: NodeJS.Timeout | undefined;

  private constructor(
    worker: Worker,
    manifest: Manifest,
    providers: readonly string[],
    options: WorkerOptions,
  ) {
    this.#worker = worker;
    this.manifest = manifest;
    this.providers = providers;
    worker.on('message', (msg: FromWorker) => this.#receive(msg));
    worker.on('error', (err) => this.#die(err));
    worker.on('exit', (code) =>
      this.#die(new Error(`engine worker exited with code ${code}${this.#fatal ? `: ${this.#fatal}` : ''}`)),
    );
    const ms = options.watchdogMs ?? 0;
    if (ms > 0) {
      this.#watchdog = setInterval(
        () => {
          if (this.#pending.size === 0 || performance.now() - this.#lastHeard < ms) return;
          this.#die(new Error(`engine worker hung: no answer for ${ms} ms while it had work`));
          void this.#worker.terminate();
        },
        Math.max(10, Math.floor(ms / 4)),
      );
      this.#watchdog.unref();
    }
  }

  /** How many requests it holds (queued or running). */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * The worker is gone: every request it held is answered with a 503 (the work was lost, not
   * wrong), and whoever supervises it hears of the death. A worker being closed is not dying.
   */
  #die(cause: Error): void {
    if (this.#dead) return;
    this.#dead = cause;
    if (this.#watchdog) clearInterval(this.#watchdog);
    const lost = this.#pending.size;
    for (const p of this.#pending.values())
      p.reject(Object.assign(errors.engineRestarting(this.manifest.name), { cause }));
    this.#pending.clear();
    if (!this.#closing) this.onDeath?.(cause, lost);
  }

  /** For tests and rehearsals only (ENGINE_FAULTS=1): makes the worker die or hang. */
  injectFault(kind: FaultKind): void {
    this.#post({ type: 'fault', kind });
  }

  /** Starts the worker and resolves once the model is loaded and verified. */
  static start(
    settings: EngineSettings,
    logLevel: string,
    options: WorkerOptions = {},
  ): Promise<WorkerEngine> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerFile(), { workerData: { settings, logLevel } });
      const onExit = (code: number) =>
        reject(new Error(`engine worker exited with code ${code} while starting`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (msg: FromWorker) => {
        worker.off('error', reject);
        worker.off('exit', onExit);
        if (msg.type === 'ready') resolve(new WorkerEngine(worker, msg.manifest, msg.providers, options));
        else if (msg.type === 'start-failed') {
          reject(new ServiceError(msg.code, 500, msg.message));
          void worker.terminate();
        } else reject(new Error(`engine worker sent ${msg.type} before ready`));
      });
    });
  }

  submit(job: EngineJob): Promise<EngineResult> {
    if (this.#dead)
      return Promise.reject(
        Object.assign(errors.engineRestarting(this.manifest.name), { cause: this.#dead }),
      );
    if (job.signal?.aborted) return Promise.reject(errors.cancelled());
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#lastHeard = performance.now();
      this.#pending.set(id, { job, steps: [], resolve, reject });
      job.signal?.addEventListener(
        'abort',
        () => {
          if (!this.#pending.delete(id)) return;
          this.#post({ type: 'cancel', id });
          reject(errors.cancelled());
        },
        { once: true },
      );
      // A copy owns its buffer outright, so it can be transferred instead of cloned.
      const image = job.image.slice();
      const msg: ToWorker = { type: 'submit', id, image, timesteps: job.timesteps };
      if (job.requestId) msg.requestId = job.requestId;
      if (job.profile) msg.profile = job.profile;
      this.#worker.postMessage(msg, [image.buffer]);
    });
  }

  #post(msg: ToWorker): void {
    if (!this.#dead) this.#worker.postMessage(msg);
  }

  #receive(msg: FromWorker): void {
    this.#lastHeard = performance.now();
    if (msg.type === 'stats') {
      this.onStep?.(msg.stats);
      return;
    }
    if (msg.type === 'fatal') {
      this.#fatal = msg.message;
      return;
    }
    if (msg.type === 'ready' || msg.type === 'start-failed') return;
    const pending = this.#pending.get(msg.id);
    if (!pending) return; // cancelled meanwhile
    if (msg.type === 'step') {
      pending.steps.push(msg.step);
      pending.job.onStep?.(msg.step);
    } else if (msg.type === 'done') {
      this.#pending.delete(msg.id);
      pending.resolve({ steps: pending.steps, queueMs: msg.queueMs, inferenceMs: msg.inferenceMs });
    } else {
      this.#pending.delete(msg.id);
      const err = new ServiceError(msg.code, msg.statusCode, msg.message);
      if (msg.context) err.context = msg.context;
      pending.reject(err);
    }
  }

  /** Closes the worker; one that does not exit within `graceMs` (a hung one) is terminated. */
  async close(graceMs = 5000): Promise<void> {
    this.#closing = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    if (this.#dead) return;
    const exited = new Promise((resolve) => this.#worker.once('exit', resolve));
    this.#worker.postMessage({ type: 'close' } satisfies ToWorker);
    const timer = setTimeout(() => void this.#worker.terminate(), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
