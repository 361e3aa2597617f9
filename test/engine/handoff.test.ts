/**
 * The hand-off of real-size images to the engine's worker. A 224 x 224 model's image is 602 kB
 * of float32; onnxruntime's session.run blocks the thread that calls it; an engine whose thread
 * also read the IPC socket received such images only a part per model call, so its batches
 * never filled. Pinned here, by counting, not timing:
 * - with a slow model (each call blocks 300 ms longer: ENGINE_STEP_DELAY_MS's mechanism), 16
 *   requests submitted together are all in the second call's batch, in both isolations;
 * - a request cancelled while queued is never stepped;
 * - the engine receives a request while a call computes, and counts it in transit until then;
 * - a decoded image crosses as its 8-bit pixels and gives the bits its float32 form gives;
 * - the answers through the hand-off equal the model's goldens;
 * - the GPU stand-in of bench:handoff (ENGINE_STAND_IN) runs no graph, answers every timestep in
 *   shape, and batches as a slow model does.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineSettings, loadConfig } from '../../src/config/config.js';
import type { Isolation } from '../../src/engine/engine-channel.js';
import { WorkerEngine } from '../../src/engine/worker-engine.js';
import { readGolden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import { ROOT, SAMPLES } from '../paths.js';
import { decodeForModel, preprocess } from '../../src/image/preprocess.js';

let work: string;
let modelDir: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'predify-handoff-'));
  modelDir = path.join(work, 'tiny224');
  const fixtures = path.join(ROOT, 'test', 'fixtures');
  execFileSync(
    '/usr/bin/python3',
    [
      'scripts/import_predify.py',
      '--config',
      path.join(fixtures, 'tiny224.toml'),
      '--backbone-module',
      `${path.join(fixtures, 'tiny224.py')}:build`,
      '--random-weights',
      '3',
      '--labels',
      path.join(ROOT, 'models', 'predify', 'fashion-labels.txt'),
      '--out',
      modelDir,
    ],
    { cwd: ROOT, stdio: 'ignore' },
  );
}, 120_000);
afterAll(() => rm(work, { recursive: true, force: true }));

async function start(isolation: Isolation, stepDelayMs: number, standIn = false) {
  const settings = {
    ...engineSettings(loadConfig({ MODEL_DIR: modelDir, BATCH_MAX_SIZE: '16', ORT_INTRA_OP_THREADS: '1' })),
    stepDelayMs,
    standIn,
  };
  const engine = await WorkerEngine.start(settings, 'silent', { isolation });
  const batches: number[] = [];
  engine.onStep = (stats) => batches.push(stats.batchSize);
  return { engine, batches };
}

/** Runs `body` with an engine as start() makes it, and closes the engine whatever happens. */
async function withEngine(
  isolation: Isolation,
  stepDelayMs: number,
  body: (e: Awaited<ReturnType<typeof start>>) => Promise<void>,
  standIn = false,
): Promise<void> {
  const started = await start(isolation, stepDelayMs, standIn);
  try {
    await body(started);
  } finally {
    await started.engine.close();
  }
}

const randomImage = (seed: number) =>
  Float32Array.from({ length: 3 * 224 * 224 }, (_, k) => Math.sin(seed * 7919 + k * 0.37));

describe.each<Isolation>(['process', 'thread'])('the hand-off to an engine %s', (isolation) => {
  it('a slow model: the second call holds all 16 requests submitted together', async () => {
    await withEngine(isolation, 300, async ({ engine, batches }) => {
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, k) => engine.submit({ image: randomImage(k), timesteps: 2 })),
      );
      expect(results.every((r) => r.steps.length === 3)).toBe(true);
      // The first call starts with whatever has arrived; during its 300 ms every other request
      // arrives, and the next call takes them all (the cap is 16).
      expect(batches[0]).toBeGreaterThanOrEqual(1);
      expect(batches[1]).toBe(16);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(16 * 3);
    });
  }, 60_000);

  it('a request cancelled while it waits in the queue is never stepped', async () => {
    await withEngine(isolation, 300, async ({ engine, batches }) => {
      const first = engine.submit({ image: randomImage(1), timesteps: 3 });
      // once the engine is in its first call, queue a second request and cancel it there
      while (batches.length === 0 && engine.pending > 0) await new Promise((r) => setImmediate(r));
      const controller = new AbortController();
      const second = engine.submit({ image: randomImage(2), timesteps: 3, signal: controller.signal });
      controller.abort();
      await expect(second).rejects.toMatchObject({ code: 'PREDIFY_ERR_CANCELLED' });
      expect((await first).steps).toHaveLength(4);
      // the first request's 4 timesteps, each alone in its call
      expect(batches).toEqual([1, 1, 1, 1]);
    });
  }, 60_000);

  it('counts images in transit apart, and receives them while a call computes', async () => {
    await withEngine(isolation, 300, async ({ engine, batches }) => {
      const first = engine.submit({ image: randomImage(1), timesteps: 3 });
      while (batches.length === 0) await new Promise((r) => setTimeout(r, 5));
      // the engine is inside its 300 ms calls now; a second request is sent...
      const second = engine.submit({ image: randomImage(2), timesteps: 0 });
      expect(engine.inTransit).toBe(1);
      // ...and received before the first request's last call, not only between its calls
      while (engine.inTransit > 0) await new Promise((r) => setTimeout(r, 5));
      expect(batches.length).toBeLessThan(4);
      await Promise.all([first, second]);
      expect(engine.inTransit).toBe(0);
    });
  }, 60_000);

  it('hands over the 8-bit pixels of a decoded image: the same bits as its float32 input', async () => {
    await withEngine(isolation, 0, async ({ engine }) => {
      const spec = (await readManifest(modelDir)).input;
      const bytes = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
      const { input } = await decodeForModel(bytes, spec);
      // a quarter of the bytes of the float32 form
      expect(input.pixels.length).toBe(224 * 224 * 3);
      const { tensor } = await preprocess(bytes, spec);
      const [asPixels, asFloats] = await Promise.all([
        engine.submit({ image: input, timesteps: 3 }),
        engine.submit({ image: tensor, timesteps: 3 }),
      ]);
      expect(asPixels.steps).toEqual(asFloats.steps);
    });
  }, 60_000);

  it("answers a 224 px model's golden cases as the PyTorch reference does", async () => {
    await withEngine(isolation, 0, async ({ engine }) => {
      const golden = await readGolden(modelDir, await readManifest(modelDir));
      expect(golden.cases.length).toBeGreaterThan(0);
      const results = await Promise.all(
        golden.cases.map((c) =>
          engine.submit({ image: Float32Array.from(c.input), timesteps: golden.timesteps }),
        ),
      );
      results.forEach((r, k) => {
        expect(r.steps).toHaveLength(golden.timesteps + 1);
        r.steps.forEach((step, t) => {
          const ref = golden.cases[k]!.logits[t]!;
          const scale = Math.max(1, ...ref.map(Math.abs));
          step.logits.forEach((v, j) => expect(Math.abs(v - ref[j]!) / scale).toBeLessThanOrEqual(1e-4));
        });
      });
    });
  }, 60_000);

  it('the GPU stand-in: no graph run, every timestep answered in shape, batched as a slow model', async () => {
    await withEngine(
      isolation,
      200,
      async ({ engine, batches }) => {
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, k) => engine.submit({ image: randomImage(k), timesteps: 2 })),
        );
        for (const r of results) {
          expect(r.steps.map((s) => s.t)).toEqual([0, 1, 2]);
          for (const step of r.steps) {
            expect([...step.logits]).toEqual(Array<number>(10).fill(0));
            expect([...step.errors]).toEqual([1]);
          }
        }
        expect(batches[1]).toBe(16);
        expect(batches.reduce((a, b) => a + b, 0)).toBe(16 * 3);
      },
      true,
    );
  }, 60_000);
});
