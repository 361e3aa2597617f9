/**
 * BATCH_MAX_SIZE=auto: the chooser on fake engines whose throughput curves are given (the
 * largest size within the tolerance, the budget, a recorded choice used without measuring, a
 * fixed size obeyed), and on the shipped model: /models and the metric show the choice.
 */
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  chooseBatch,
  measureCurve,
  pickSize,
  plateauOf,
  TUNING,
  type BatchPoint,
} from '../../src/engine/batch-tuning.js';
import { buildTestApp } from '../helpers.js';

/** A fake engine: `rate(size)` sample-steps/s, each measurement taking `msPer(size)` of a fake clock. */
function fake(rate: (size: number) => number, msPer: (size: number) => number = () => 100) {
  let clock = 0;
  const measured: number[] = [];
  return {
    measured,
    now: () => clock,
    measure: async (size: number) => {
      measured.push(size);
      clock += msPer(size);
      return rate(size);
    },
  };
}

const curve = (points: [number, number][]): BatchPoint[] =>
  points.map(([size, sampleStepsPerSecond]) => ({ size, sampleStepsPerSecond }));

describe('pickSize', () => {
  it('takes the largest size within the tolerance of the best', () => {
    const c = curve([
      [1, 300],
      [2, 400],
      [4, 480],
      [8, 605],
      [16, 620],
      [32, 610],
      [64, 540],
    ]);
    // 610 is within 10% of 620: as fast, and more room for continuous batching to admit; 64 is past the peak.
    expect(pickSize(c)).toBe(32);
    expect(pickSize(c, 0.001)).toBe(16);
  });
});

describe('plateauOf', () => {
  it('lists the sizes below the choice from the first within the tolerance, a noisy dip included', () => {
    const c = curve([
      [1, 300],
      [2, 400],
      [4, 605],
      [8, 520],
      [16, 620],
      [32, 610],
      [64, 560],
    ]);
    expect(plateauOf({ size: 32, source: 'measured', curve: c })).toEqual([4, 8, 16]);
    expect(plateauOf({ size: 32, source: 'recorded', curve: c })).toEqual([4, 8, 16]);
    // A fixed size has no plateau: a batch is full at that size only.
    expect(plateauOf({ size: 32, source: 'fixed', curve: [] })).toEqual([]);
  });
});

describe('measureCurve', () => {
  it('measures every size up to the cap, twice each, within a generous budget', async () => {
    const f = fake((s) => 100 * Math.log2(2 * s));
    const { curve: c, stoppedAt } = await measureCurve(f.measure, { budgetMs: 1e9, now: f.now });
    expect(c.map((p) => p.size)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(stoppedAt).toBeUndefined();
    expect(f.measured).toHaveLength(14);
  });

  it('keeps to the budget: no size it expects to overrun it, size 1 whatever it costs', async () => {
    // Each size takes as long as its number of samples, in seconds (a PVGG16 on a small CPU).
    const f = fake(
      (s) => s,
      (s) => 1000 * s,
    );
    const { curve: c, stoppedAt, ms } = await measureCurve(f.measure, { budgetMs: 5000, now: f.now });
    expect(c.map((p) => p.size)).toEqual([1, 2]);
    expect(stoppedAt).toBe('budget');
    expect(ms).toBeLessThanOrEqual(5000);
    const slow = fake(
      () => 1,
      () => 60_000,
    );
    expect((await measureCurve(slow.measure, { budgetMs: 5000, now: slow.now })).curve).toHaveLength(1);
  });

  it('stops once throughput has clearly passed its peak', async () => {
    const f = fake((s) => (s <= 8 ? 100 * s : 800 / (s / 8) ** 2));
    const { curve: c, stoppedAt } = await measureCurve(f.measure, { budgetMs: 1e9, now: f.now });
    expect(c.map((p) => p.size)).toEqual([1, 2, 4, 8, 16, 32]);
    expect(stoppedAt).toBe('past the peak');
    expect(pickSize(c)).toBe(8);
    // npm run tune measures every size regardless.
    const all = fake((s) => (s <= 8 ? 100 * s : 800 / (s / 8) ** 2));
    const full = await measureCurve(all.measure, { budgetMs: 1e9, now: all.now, stopPastPeak: false });
    expect(full.curve).toHaveLength(7);
  });

  it('keeps the better of two measurements of a size: noise only slows one down', async () => {
    let calls = 0;
    const f = fake((s) => (calls++ === 3 ? 10 : 100 * s));
    const { curve: c } = await measureCurve(f.measure, { budgetMs: 1e9, now: f.now, maxSize: 8 });
    expect(c.map((p) => p.sampleStepsPerSecond)).toEqual([100, 200, 400, 800]);
  });
});

describe('chooseBatch', () => {
  const common = { budgetMs: 5000, threads: 0, provider: 'cpu' };
  const recorded = {
    cpu: {
      size: 16,
      curve: curve([
        [8, 500],
        [16, 600],
      ]),
      cpus: availableParallelism(),
      threads: 0,
      measuredAt: '2026-12-03T00:00:00Z',
    },
  };

  it('obeys a fixed size without measuring', async () => {
    const f = fake(() => 1);
    expect(await chooseBatch({ ...common, maxBatch: 12, measure: f.measure })).toEqual({
      size: 12,
      source: 'fixed',
      curve: [],
    });
    expect(f.measured).toEqual([]);
  });

  it('keeps a choice made before (a restarted engine) without measuring', async () => {
    const f = fake(() => 1);
    const before = { size: 8, source: 'measured' as const, curve: curve([[8, 100]]), ms: 1200 };
    expect(await chooseBatch({ ...common, maxBatch: 'auto', chosen: before, measure: f.measure })).toBe(
      before,
    );
    expect(f.measured).toEqual([]);
  });

  it("uses a curve recorded for this provider and machine without measuring, and measures when it is another's", async () => {
    const f = fake(() => 1);
    const choice = await chooseBatch({ ...common, maxBatch: 'auto', tuning: recorded, measure: f.measure });
    expect(choice).toMatchObject({ size: 16, source: 'recorded' });
    expect(f.measured).toEqual([]);
    for (const other of [
      { ...common, provider: 'cuda' },
      { ...common, threads: 1 },
      { ...common, tuning: { cpu: { ...recorded.cpu, cpus: availableParallelism() + 1 } } },
    ]) {
      const g = fake((s) => Math.min(s, 4) * 100);
      const measured = await chooseBatch({
        tuning: recorded,
        ...other,
        maxBatch: 'auto',
        measure: g.measure,
      });
      // flat from 4 on: the largest of the sizes as fast as the best
      expect(measured).toMatchObject({ size: 64, source: 'measured' });
      expect(g.measured.length).toBeGreaterThan(0);
    }
  });
});

describe('BATCH_MAX_SIZE=auto on the shipped model', () => {
  it('measures at load, and /models and the metric say what it chose', async () => {
    const { app, engine } = await buildTestApp({ BATCH_MAX_SIZE: 'auto', BATCH_TUNE_BUDGET_MS: '1500' });
    try {
      const batch = engine!.batch!;
      expect(batch.source).toBe('measured');
      expect(batch.curve[0]!.size).toBe(1);
      expect(batch.curve.every((p) => p.sampleStepsPerSecond > 0)).toBe(true);
      expect(batch.size).toBe(pickSize(batch.curve));
      expect(batch.size).toBeLessThanOrEqual(TUNING.maxSize);
      const [model] = (await app.inject('/models')).json().models;
      expect(model.batch).toMatchObject({ size: batch.size, source: 'measured' });
      expect(model.batch.curve).toHaveLength(batch.curve.length);
      const metrics = (await app.inject('/metrics')).body;
      expect(metrics).toContain(
        `predify_engine_batch_size{model="fashion-pc",source="measured"} ${batch.size}`,
      );
      // A classification runs as usual.
      expect(
        (
          await app.inject({
            method: 'GET',
            url: '/readyz',
          })
        ).statusCode,
      ).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('a fixed BATCH_MAX_SIZE is reported as such', async () => {
    const { app } = await buildTestApp({ BATCH_MAX_SIZE: '8' });
    const [model] = (await app.inject('/models')).json().models;
    expect(model.batch).toEqual({ size: 8, source: 'fixed', curve: [] });
    await app.close();
  });
});
