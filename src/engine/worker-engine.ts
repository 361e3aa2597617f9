/** The engine in a worker (a thread or a child process), seen from the HTTP thread. */
import { errors, ServiceError } from '../errors.js';
import type { Manifest } from '../model/manifest.js';
import type { EngineResult, StepStats } from './batch-scheduler.js';
import type { EngineSettings, InferenceEngine } from './inference-engine.js';
import type { EngineRequest, ModelInput } from './engine-request.js';
import type { SampleStep } from './predictive-step.js';
import { openChannel, type EngineChannel, type Isolation } from './engine-channel.js';
import type { BatchChoice } from './batch-tuning.js';
import type { FaultKind, FromWorker, ToWorker } from './worker-protocol.js';

interface Pending {
  job: EngineRequest;
  /** the worker said it has the request */
  received: boolean;
  steps: SampleStep[];
  resolve(result: EngineResult): void;
  reject(err: Error): void;
}

export interface WorkerOptions {
  /** a worker with work that has sent nothing for this long is hung, and treated as dead (0: never) */
  watchdogMs?: number;
  /** a thread or a child process (the default) */
  isolation?: Isolation;
}

export class WorkerEngine implements InferenceEngine {
  readonly manifest: Manifest;
  readonly providers: readonly string[];
  onStep: ((stats: StepStats) => void) | undefined;
  /** called once if the worker dies (not when it is closed), after its requests were answered */
  onDeath: ((cause: Error, lost: number) => void) | undefined;
  readonly #worker: EngineChannel;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #dead: Error | undefined;
  #closing = false;
  /** what the worker said it is dying of, before it exits */
  #fatal: string | undefined;
  #lastHeard = performance.now();
  readonly #watchdog: NodeJS.Timeout | undefined;

  private constructor(
    worker: EngineChannel,
    manifest: Manifest,
    providers: readonly string[],
    readonly batch: BatchChoice,
    options: WorkerOptions,
  ) {
    this.#worker = worker;
    this.manifest = manifest;
    this.providers = providers;
    worker.onMessage((msgs) => msgs.forEach((msg) => this.#receive(msg)));
    worker.onExit((how) =>
      this.#die(new Error(`engine worker exited with ${how}${this.#fatal ? `: ${this.#fatal}` : ''}`)),
    );
    const ms = options.watchdogMs ?? 0;
    if (ms > 0) {
      this.#watchdog = setInterval(
        () => {
          if (this.#pending.size === 0 || performance.now() - this.#lastHeard < ms) return;
          this.#die(new Error(`engine worker hung: no answer for ${ms} ms while it had work`));
          this.#worker.kill();
        },
        Math.max(10, Math.floor(ms / 4)),
      );
      this.#watchdog.unref();
    }
  }

  /** How many requests it holds (queued or running), in transit to the worker or there. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Requests sent that the worker has not yet received (kept apart in the metrics). */
  get inTransit(): number {
    let n = 0;
    for (const p of this.#pending.values()) if (!p.received) n++;
    return n;
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
      const worker = openChannel(options.isolation ?? 'process', { settings, logLevel });
      worker.onExit((how) => reject(new Error(`engine worker exited with ${how} while starting`)));
      worker.onMessage(([msg]) => {
        worker.offAll();
        if (msg?.type === 'ready')
          resolve(new WorkerEngine(worker, msg.manifest, msg.providers, msg.batch, options));
        else {
          reject(
            msg?.type === 'start-failed'
              ? new ServiceError(msg.code, 500, msg.message)
              : new Error(`engine worker sent ${msg?.type} before ready`),
          );
          worker.kill();
        }
      });
    });
  }

  submit(job: EngineRequest): Promise<EngineResult> {
    if (this.#dead)
      return Promise.reject(
        Object.assign(errors.engineRestarting(this.manifest.name), { cause: this.#dead }),
      );
    if (job.signal?.aborted) return Promise.reject(errors.cancelled());
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#lastHeard = performance.now();
      this.#pending.set(id, { job, received: false, steps: [], resolve, reject });
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
      const image: ModelInput =
        job.image instanceof Float32Array
          ? job.image.slice()
          : { pixels: job.image.pixels.slice(), stride: job.image.stride };
      const buffer = image instanceof Float32Array ? image.buffer : image.pixels.buffer;
      const msg: ToWorker = { type: 'submit', id, image, timesteps: job.timesteps };
      if (job.settle) msg.settle = job.settle;
      if (job.requestId) msg.requestId = job.requestId;
      if (job.profile) msg.profile = job.profile;
      this.#worker.send(msg, [buffer as ArrayBuffer]);
    });
  }

  #post(msg: ToWorker): void {
    if (!this.#dead) this.#worker.send(msg);
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
    if (msg.type === 'received') {
      pending.received = true;
    } else if (msg.type === 'step') {
      pending.steps.push(msg.step);
      pending.job.onStep?.(msg.step);
    } else if (msg.type === 'done') {
      this.#pending.delete(msg.id);
      const { queueMs, inferenceMs, stop } = msg;
      pending.resolve({ steps: pending.steps, queueMs, inferenceMs, ...(stop ? { stop } : {}) });
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
    const exited = new Promise<void>((resolve) => this.#worker.onExit(() => resolve()));
    this.#worker.send({ type: 'close' } satisfies ToWorker);
    const timer = setTimeout(() => this.#worker.kill(), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
