/**
 * Predify networks as users bring them (Predify TOML + checkpoint, random weights, 32x32;
 * imported by test/global-setup.ts): the paper's PVGG16 and PEfficientNetB0, and ResNet-18,
 * MobileNetV3-Small, ConvNeXt-Tiny and DenseNet-121 cut by tracing their forward passes. Run by
 * the engine, they match the Predify package's semantics (golden outputs of
 * scripts/predify/package_reference.py, which runs the whole backbone with forward hooks as the
 * package does: at a residual stage the hook replaces the stage's output) at batch 1 for
 * t = 0..5, and the API serves them.
 */
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareWithGolden } from '../../src/engine/golden-check.js';
import { PredictiveLoop } from '../../src/engine/predictive-loop.js';
import { readGolden } from '../../src/model/golden.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { buildTestApp, openModel } from '../helpers.js';
import { ANY_CNN_MODELS, PAPER_MODELS, TEST_MODELS } from '../paths.js';

describe.each([...PAPER_MODELS, ...ANY_CNN_MODELS])('$name', ({ name, pcoders }) => {
  const dir = path.join(TEST_MODELS, name);
  let model: LoadedModel;
  // Loaded once: the VGG16 graphs weigh ~850 MB.
  beforeAll(async () => {
    model = await openModel(dir);
  });
  afterAll(() => model.release());

  it(`has ${pcoders} PCoders and matches the package's dynamics for t = 0..5`, async () => {
    expect(model.manifest.pcoders).toHaveLength(pcoders);
    const report = await compareWithGolden(new PredictiveLoop(model), await readGolden(dir, model.manifest));
    expect(report.timesteps).toBe(5);
    // Random networks have logits of order 10: compare relative to their scale.
    expect(report.maxLogitScaledDiff).toBeLessThanOrEqual(1e-4);
    expect(report.maxErrorRelDiff).toBeLessThanOrEqual(1e-4);
    expect(report.maxBatchDiff).toBeLessThanOrEqual(1e-5);
  });

  it('is served by the API when MODEL_DIR points at it', async () => {
    const { app, config } = await buildTestApp({}, { modelDir: dir, model });
    expect(config.MODEL_DIR).toBe(dir);
    try {
      const png = await sharp({
        create: { width: 50, height: 40, channels: 3, background: { r: 200, g: 30, b: 90 } },
      })
        .png()
        .toBuffer();
      const res = await app.inject({
        method: 'POST',
        url: '/classify?timesteps=2',
        headers: { 'content-type': 'image/png' },
        payload: png,
      });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.model).toBe(name);
      expect(body.steps).toHaveLength(3);
      expect(Object.keys(body.steps[0].errors)).toHaveLength(pcoders);
    } finally {
      await app.close();
    }
  });
});
