/**
 * Dynamic and continuous batching: requests share steps, join running batches at timestep
 * boundaries, leave at their own T, and get exactly the numbers they would get alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchScheduler, type SchedulerOptions, type StepStats } from '../../src/engine/batch-scheduler.js';
import { type SampleState, type SampleStep } from '../../src/engine/predictive-step.js';
import { openStepper } from '../../src/engine/open-stepper.js';
import { stoppingPoint } from '../../src/engine/settling.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { openModel } from '../helpers.js';
import { DEFAULT_MODEL } from '../paths.js';

let model: LoadedModel;
let golden: Golden;
const images: Float32Array[] = [];

beforeAll(async () => {
  model = await openModel();
  golden = await readGolden(DEFAULT_MODEL, model.manifest);
  for (const c of golden.cases) images.push(Float32Array.from(c.input));
});
afterAll(() => model.release());

const options = (o: Partial<SchedulerOptions> = {}): SchedulerOptions => ({
  maxBatch: 32,
  maxDelayMs: 0,
  continuous: true,
  maxQueue: 0,
  ...o,
});

function scheduler(o: Partial<SchedulerOptions> = {}) {
  const s = new BatchScheduler(openStepper(model), options(o));
  const stats: StepStats[] = [];
  s.onStep = (st) => stats.push(st);
  return { s, stats };
}

/** A long request on `s`: `running` resolves at its first step; `steps()` counts them so far. */
function startLong(s: BatchScheduler, timesteps: number) {
  let steps = 0;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const done = s.submit({
    image: images[0]!,
    timesteps,
    onStep: () => {
      steps++;
      started();
    },
  });
  return { running, done, steps: () => steps };
}

/** Reference logits of golden case k at timestep t (PyTorch, batch of one). */
function expectGolden(k: number, steps: SampleStep[]) {
  steps.forEach((step, t) => {
    expect(step.t).toBe(t);
    step.logits.forEach((v, j) =>
      expect(Math.abs(v - golden.cases[k]!.logits[t]![j]!)).toBeLessThanOrEqual(1e-4),
    );
  });
}

describe('BatchScheduler', () => {
  it('coalesces concurrent requests into one batch within the queue delay', async () => {
    const { s, stats } = scheduler({ maxDelayMs: 50, maxBatch: 8 });
    const results = await Promise.all(images.slice(0, 6).map((image) => s.submit({ image, timesteps: 2 })));
    expect(stats.map((st) => st.batchSize)).toEqual([6, 6, 6]);
    results.forEach((r, k) => expectGolden(k, r.steps));
  });

  it('never steps more than maxBatch samples together', async () => {
    const { s, stats } = scheduler({ maxBatch: 3 });
    await Promise.all(images.map((image) => s.submit({ image, timesteps: 1 })));
    expect(Math.max(...stats.map((st) => st.batchSize))).toBe(3);
  });

  it('with delay 0, starts at once with what is there', async () => {
    const { s, stats } = scheduler({ maxDelayMs: 0 });
    await s.submit({ image: images[0]!, timesteps: 1 });
    expect(stats.map((st) => st.batchSize)).toEqual([1, 1]);
  });

  it('lets a request join a running batch mid-loop with its exact results (continuous)', async () => {
    const { s, stats } = scheduler();
    const steps: number[] = [];
    let late: Promise<{ steps: SampleStep[] }> | undefined;
    const long = s.submit({
      image: images[0]!,
      timesteps: 10,
      onStep: (st) => {
        steps.push(st.t);
        if (st.t === 3) late = s.submit({ image: images[1]!, timesteps: 4 });
      },
    });
    const [a] = await Promise.all([long]);
    const b = await late!;
    // The late request joined at a timestep boundary: some steps ran both samples together.
    expect(stats.some((st) => st.batchSize === 2 && st.admitted === 1)).toBe(true);
    expectGolden(0, a.steps);
    expectGolden(1, b.steps);
    expect(b.steps).toHaveLength(5);
  });

  it('answers a short request without waiting for a long one (continuous)', async () => {
    const { s } = scheduler();
    const long = startLong(s, 30);
    await long.running;
    const short = await s.submit({ image: images[1]!, timesteps: 1 });
    expect(long.steps()).toBeLessThan(31); // the long request is still running
    expectGolden(1, short.steps);
    await long.done;
  });

  it('without continuous batching, a request waits for the running batch to finish', async () => {
    const { s, stats } = scheduler({ continuous: false });
    const long = startLong(s, 6);
    await long.running;
    const short = await s.submit({ image: images[1]!, timesteps: 1 });
    expect(long.steps()).toBe(7);
    expect(stats.every((st) => st.batchSize === 1)).toBe(true);
    expectGolden(1, short.steps);
    await long.done;
  });

  it('drops a cancelled request from the batch at the next step', async () => {
    const { s, stats } = scheduler();
    const controller = new AbortController();
    const cancelled = s.submit({
      image: images[0]!,
      timesteps: 20,
      signal: controller.signal,
      onStep: (st) => st.t === 2 && controller.abort(),
    });
    const other = s.submit({ image: images[1]!, timesteps: 8 });
    await expect(cancelled).rejects.toMatchObject({ code: 'PREDIFY_ERR_CANCELLED' });
    await other;
    expect(stats.filter((st) => st.batchSize === 2)).toHaveLength(3); // t = 0, 1, 2
  });

  it('refuses requests beyond maxQueue with an overload error', async () => {
    const { s } = scheduler({ maxBatch: 1, maxQueue: 2 });
    const first = s.submit({ image: images[0]!, timesteps: 3 }); // admitted at once
    await new Promise((r) => setImmediate(r));
    const queued = [
      s.submit({ image: images[1]!, timesteps: 0 }),
      s.submit({ image: images[2]!, timesteps: 0 }),
    ];
    await expect(s.submit({ image: images[3]!, timesteps: 0 })).rejects.toMatchObject({
      code: 'PREDIFY_ERR_OVERLOADED',
    });
    await Promise.all([first, ...queued]);
  });

  it('fails only the requests of the batch whose run failed, and keeps serving', async () => {
    const real = openStepper(model);
    let failNext = false;
    const flaky = {
      inputSize: real.inputSize,
      maxStepsPerCall: 1,
      steps: (samples: readonly SampleState[], k: number) => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('simulated onnxruntime failure'));
        }
        return real.steps(samples, k);
      },
    };
    const s = new BatchScheduler(flaky, options());
    failNext = true;
    const failed = await Promise.allSettled([
      s.submit({ image: images[0]!, timesteps: 2 }),
      s.submit({ image: images[1]!, timesteps: 2 }),
    ]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((failed[0] as PromiseRejectedResult).reason).toMatchObject({
      code: 'PREDIFY_ERR_ENGINE_FAILED',
      statusCode: 500,
    });
    const ok = await s.submit({ image: images[2]!, timesteps: 2 });
    expectGolden(2, ok.steps);
  });
});

describe('anytime jobs (settle)', () => {
  // Between the golden cases' error changes at t = 3 (0.0062..0.0064 and 0.0074..0.0087), so
  // that some stop at t = 3 and the others at t = 4, each with a clear margin.
  const rule = { tolerance: 0.0069, patience: 1 };
  /** Where the PyTorch reference's own trajectory of case k stops under `rule`. */
  const referenceStop = (k: number, cap: number) =>
    stoppingPoint(
      golden.cases[k]!.logits.map((logits, t) => ({ logits, errors: golden.cases[k]!.errors[t]! })),
      rule,
      cap,
    );

  it('stops each sample where the reference trajectory settles, with the reference numbers', async () => {
    const { s } = scheduler();
    const cap = golden.timesteps;
    const results = await Promise.all(
      images.map((image) => s.submit({ image, timesteps: cap, settle: rule })),
    );
    const stops = results.map((r, k) => {
      const expected = referenceStop(k, cap);
      expect(r.stop).toBe(expected.reason);
      expect(r.steps).toHaveLength(expected.t + 1);
      expectGolden(k, r.steps);
      return expected.t;
    });
    // The cases do not all stop at once: the test would not see a sample leave a batch otherwise.
    expect(new Set(stops).size).toBeGreaterThan(1);
  });

  it('lets a settled sample leave a running batch at once, with the numbers it gets alone', async () => {
    const { s, stats } = scheduler();
    const alone = await scheduler().s.submit({ image: images[0]!, timesteps: 10, settle: rule });
    const long = s.submit({ image: images[1]!, timesteps: 10 });
    const anytime = await s.submit({ image: images[0]!, timesteps: 10, settle: rule });
    expect(anytime.steps).toEqual(alone.steps);
    expect(anytime.stop).toBe(alone.stop);
    await long;
    const stop = anytime.steps.length - 1;
    // Two samples while both ran, then one: the settled one did not stay for the other's T.
    expect(stats.map((st) => st.batchSize)).toEqual([
      ...Array<number>(stop + 1).fill(2),
      ...Array<number>(10 - stop).fill(1),
    ]);
  });

  it('says it stopped at the cap when the dynamics did not settle by then', async () => {
    const { s } = scheduler();
    const r = await s.submit({ image: images[0]!, timesteps: 1, settle: { tolerance: 1e-9, patience: 1 } });
    expect(r).toMatchObject({ stop: 'cap' });
    expect(r.steps).toHaveLength(2);
  });

  it('refuses a rule it cannot apply, with the message a request would get', async () => {
    const { s } = scheduler();
    await expect(
      s.submit({ image: images[0]!, timesteps: 3, settle: { tolerance: 0, patience: 1 } }),
    ).rejects.toMatchObject({ statusCode: 400, message: expect.stringMatching(/tolerance must be above 0/) });
    // A patience longer than the cap could never be met.
    await expect(
      s.submit({ image: images[0]!, timesteps: 3, settle: { tolerance: 0.1, patience: 4 } }),
    ).rejects.toMatchObject({
      statusCode: 400,
      message: expect.stringMatching(/patience must be a whole number from 1 to the cap \(3\)/),
    });
  });
});
