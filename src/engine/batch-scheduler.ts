/**
 * Who runs in which batch at which timestep. Requests queue; the scheduler steps all active
 * samples together, one timestep per call, or, for a model with a loop graph, up to
 * stepsPerCall where multiStep allows (never past any running request's last). With continuous
 * batching a queued request joins at the next call boundary and each request leaves as soon as
 * its own T is reached; without it, a batch is formed only when the previous one has finished.
 */
import { errors } from '../errors.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { newSample, type PredictiveStepper, type SampleState, type SampleStep } from './predictive-step.js';
import { settleRuleProblem, SettleWatch, type SettleRule, type StopReason } from './settling.js';

export interface SchedulerOptions {
  /** most samples stepped together */
  maxBatch: number;
  /** how long an idle engine waits for more requests before starting a batch */
  maxDelayMs: number;
  /** admit queued requests into a running batch at timestep boundaries */
  continuous: boolean;
  /** most requests waiting for admission; more are refused (0: no bound) */
  maxQueue: number;
  /**
   * Most timesteps computed in one call when the model has a loop graph (default 1). With
   * multiStep 'always' the batch then changes only every so many timesteps, and a settled
   * sample may be computed past its settling point within a call (those steps are dropped).
   */
  stepsPerCall?: number;
  /** when a call may compute several timesteps (see #stepsThisCall); default 'full' */
  multiStep?: 'full' | 'always';
  /**
   * Batch sizes below maxBatch measured to run as efficiently as it (BATCH_MAX_SIZE=auto: the
   * plateau of the engine's curve). Under multiStep 'full', a batch counts as full at the
   * smallest of them that holds the most requests in hand lately (see #fullSize).
   */
  efficientSizes?: readonly number[];
}

/**
 * How long the peak of requests in hand is remembered (see #fullSize): a second, or four
 * calls of stepsPerCall timesteps, whichever is longer (a slow model's rare arrivals are
 * remembered as long as they could be made to wait).
 */
const PEAK_WINDOW_MS = 1000;
const PEAK_WINDOW_CALLS = 4;

export interface EngineJob {
  image: Float32Array;
  /** the last timestep to compute; with `settle`, the cap */
  timesteps: number;
  /** anytime: stop as soon as the sample's dynamics settle (src/engine/settling.ts) */
  settle?: SettleRule;
  /** sees each timestep as soon as it is computed */
  onStep?: (step: SampleStep) => void;
  /** aborting removes the request from the queue or the batch */
  signal?: AbortSignal;
  /** the HTTP request id, so that a failed batch can name the requests it failed */
  requestId?: string;
  /** the model's hyperparameter profile to run with; its exported hyperparameters if absent */
  profile?: string;
}

export interface EngineResult {
  steps: SampleStep[];
  queueMs: number;
  inferenceMs: number;
  /** why a job with `settle` stopped */
  stop?: StopReason;
}

export interface StepStats {
  batchSize: number;
  admitted: number;
  ms: number;
}

interface Entry {
  job: EngineJob;
  state: SampleState;
  watch: SettleWatch | undefined;
  steps: SampleStep[];
  queuedAt: number;
  queueMs: number;
  inferenceMs: number;
  resolve(result: EngineResult): void;
  reject(err: Error): void;
}

/** The part of PredictiveStepper the scheduler uses (tests substitute their own). */
export type Stepper = Pick<PredictiveStepper, 'steps' | 'maxStepsPerCall' | 'inputSize'>;

export class BatchScheduler {
  readonly #stepper: Stepper;
  readonly #options: SchedulerOptions;
  readonly #queue: Entry[] = [];
  #active: Entry[] = [];
  #running = false;
  #wake: (() => void) | undefined;
  /** the most requests in hand (running and queued) at a step, this window and the last */
  #peak = { now: 0, before: 0, since: 0 };
  /** how long the last call took per timestep */
  #stepMs = 0;
  /** called after every step, for metrics */
  onStep: ((stats: StepStats) => void) | undefined;

  constructor(stepper: Stepper, options: SchedulerOptions) {
    this.#stepper = stepper;
    this.#options = options;
  }

  get queued(): number {
    return this.#queue.length;
  }

  get active(): number {
    return this.#active.length;
  }

  /** Queues `job`, stepped with `coefficients` (a profile's), else the model's own. */
  submit(job: EngineJob, coefficients?: readonly Coefficients[]): Promise<EngineResult> {
    if (job.image.length !== this.#stepper.inputSize) {
      return Promise.reject(
        errors.inputShape(`${job.image.length} values, the model takes ${this.#stepper.inputSize}`),
      );
    }
    if (!Number.isInteger(job.timesteps) || job.timesteps < 0) {
      return Promise.reject(
        errors.inputShape(`timesteps must be a non-negative integer, got ${job.timesteps}`),
      );
    }
    const problem = job.settle && settleRuleProblem(job.settle, job.timesteps);
    if (problem) return Promise.reject(errors.inputShape(problem));
    if (this.#options.maxQueue > 0 && this.#queue.length >= this.#options.maxQueue) {
      return Promise.reject(errors.overloaded(this.#queue.length));
    }
    return new Promise<EngineResult>((resolve, reject) => {
      const entry: Entry = {
        job,
        // An auto request's timesteps is its cap: it may stop earlier, never later.
        state: newSample(job.image, coefficients, job.timesteps),
        watch: job.settle && new SettleWatch(job.settle),
        steps: [],
        queuedAt: performance.now(),
        queueMs: 0,
        inferenceMs: 0,
        resolve,
        reject,
      };
      if (job.signal?.aborted) return reject(errors.cancelled());
      job.signal?.addEventListener('abort', () => this.#cancel(entry), { once: true });
      this.#queue.push(entry);
      if (this.#queue.length >= this.#options.maxBatch) this.#wake?.();
      if (!this.#running) void this.#loop();
    });
  }

  #cancel(entry: Entry): void {
    const q = this.#queue.indexOf(entry);
    if (q >= 0) this.#queue.splice(q, 1);
    // An active entry is dropped at the next step boundary (#loop filters aborted entries).
    entry.reject(errors.cancelled());
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 || this.#active.length > 0) {
        if (this.#active.length === 0) await this.#gather();
        const admitted = this.#admit();
        if (this.#active.length === 0) continue;
        await this.#step(admitted);
        // A model call computes synchronously and resolves as a microtask: without a turn of
        // the event loop here, requests that arrived as messages during the call would wait
        // for the batch after next.
        if (this.#queue.length < this.#options.maxBatch)
          await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#running = false;
    }
  }

  /** An idle engine waits up to maxDelayMs from the oldest request for a fuller batch. */
  async #gather(): Promise<void> {
    const oldest = this.#queue[0];
    if (!oldest || this.#options.maxDelayMs <= 0 || this.#queue.length >= this.#options.maxBatch) return;
    const wait = oldest.queuedAt + this.#options.maxDelayMs - performance.now();
    if (wait <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  #admit(): number {
    this.#active = this.#active.filter((e) => !e.job.signal?.aborted);
    if (!this.#options.continuous && this.#active.length > 0) return 0;
    const room = this.#options.maxBatch - this.#active.length;
    const incoming = this.#queue.splice(0, Math.max(0, room));
    const now = performance.now();
    for (const e of incoming) e.queueMs = now - e.queuedAt;
    this.#active.push(...incoming);
    return incoming.length;
  }

  /**
   * Several timesteps in one call only where no request's admission or departure changes:
   * 'full' steps a batch with no room (nobody could join before its first request ends, and the
   * call ends there) and never one holding an anytime request (it may settle at any step);
   * 'always' trades that for throughput: arrivals wait for the running call.
   */
  #stepsThisCall(batch: readonly Entry[]): number {
    const cap = Math.min(this.#options.stepsPerCall ?? 1, this.#stepper.maxStepsPerCall);
    if (cap <= 1) return 1;
    if ((this.#options.multiStep ?? 'full') === 'full') {
      const room = this.#options.continuous && batch.length < this.#fullSize();
      if (room || batch.some((e) => e.watch !== undefined)) return 1;
    }
    return Math.min(cap, ...batch.map((e) => e.job.timesteps - e.state.t + 1));
  }

  /**
   * The size at which a batch counts as full for 'full' multi-step calls: maxBatch, or, with
   * efficientSizes, the smallest of them at or above the most requests in hand lately (over
   * one to two windows: PEAK_WINDOW_MS, longer for a slow model). A cap above the load leaves
   * room to admit (long requests cannot hold every slot), but a batch with room is stepped one
   * timestep a call, and each call hands the whole state back to JavaScript (about 10% of a
   * step on the shipped model at batch 32, measured with onnxruntime-node). When the
   * requests in hand have filled a size that runs as efficiently as the cap, and no more have
   * been in hand lately, nobody is waiting to join: the batch takes several timesteps a call,
   * as a full one does. 32 clients against an auto cap of 64 then run as against a cap of 32.
   */
  #fullSize(): number {
    const sizes = this.#options.efficientSizes;
    if (!sizes || sizes.length === 0) return this.#options.maxBatch;
    const now = performance.now();
    const held = this.#active.length + this.#queue.length;
    const peak = this.#peak;
    const window = Math.max(
      PEAK_WINDOW_MS,
      PEAK_WINDOW_CALLS * (this.#options.stepsPerCall ?? 1) * this.#stepMs,
    );
    if (now - peak.since > window) {
      peak.before = now - peak.since > 2 * window ? 0 : peak.now;
      peak.now = 0;
      peak.since = now;
    }
    peak.now = Math.max(peak.now, held);
    const lately = Math.max(peak.now, peak.before);
    return Math.min(this.#options.maxBatch, ...sizes.filter((size) => size >= lately));
  }

  async #step(admitted: number): Promise<void> {
    const batch = this.#active;
    const k = this.#stepsThisCall(batch);
    const started = performance.now();
    let outputs: SampleStep[][];
    try {
      outputs = await this.#stepper.steps(
        batch.map((e) => e.state),
        k,
      );
    } catch (err) {
      // One failed run fails only the requests in this batch; the engine keeps serving.
      this.#active = [];
      const failure = errors.engineFailed();
      failure.cause = err;
      failure.context = { batch: batch.map((e) => e.job.requestId ?? 'unknown') };
      for (const e of batch) e.reject(failure);
      return;
    }
    const ms = (performance.now() - started) / k;
    this.#stepMs = ms;
    outputs.forEach((_, j) =>
      this.onStep?.({ batchSize: batch.length, admitted: j === 0 ? admitted : 0, ms }),
    );
    const still: Entry[] = [];
    batch.forEach((e, b) => {
      for (const step of outputs) {
        const out = step[b]!;
        e.inferenceMs += ms;
        if (e.job.signal?.aborted) return;
        e.steps.push(out);
        e.job.onStep?.(out);
        // A settled sample leaves the batch at once; the next step runs without it.
        const settled = e.watch?.settled(out) ?? false;
        if (!settled && out.t < e.job.timesteps) continue;
        const { steps, queueMs, inferenceMs } = e;
        e.resolve({
          steps,
          queueMs,
          inferenceMs,
          ...(e.watch ? { stop: settled ? (e.watch.gated ? 'gated' : 'settled') : 'cap' } : {}),
        });
        return;
      }
      still.push(e);
    });
    this.#active = still;
  }
}
