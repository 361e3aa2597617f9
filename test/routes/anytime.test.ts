/**
 * timesteps=auto over HTTP: /classify, its streams and V2 stop each sample where its dynamics
 * settle, with the numbers of a fixed-T request up to there (V2: the PyTorch goldens), say
 * why they stopped, and refuse a rule or cap they cannot apply with a 400 naming it.
 */
import type { FastifyInstance } from 'fastify';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softmax } from '../../src/engine/results.js';
import { stoppingPoint } from '../../src/engine/settling.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

let app: FastifyInstance;
let golden: Golden;
let png: Buffer;

beforeAll(async () => {
  ({ app } = await buildTestApp({ BATCH_MAX_SIZE: '8', MAX_TIMESTEPS: '16' }));
  golden = await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL));
  png = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(async () => app.close());

const classify = (query: string, accept?: string) =>
  app.inject({
    method: 'POST',
    url: `/classify?${query}`,
    headers: { 'content-type': 'image/png', ...(accept ? { accept } : {}) },
    payload: png,
  });
const infer = (body: object) =>
  app.inject({ method: 'POST', url: '/v2/models/fashion-pc/infer', payload: body });

describe('/classify?timesteps=auto', () => {
  it('stops where the dynamics settle, with the numbers of a fixed-T request up to there', async () => {
    // confidence=1: no confidence gate, the errors decide (the profile's rule has one).
    const auto = (
      await classify('timesteps=auto&max_timesteps=10&tolerance=0.05&patience=1&confidence=1')
    ).json();
    const fixed = (await classify('timesteps=10')).json();
    expect(auto.stop).toEqual({
      reason: 'settled',
      tolerance: 0.05,
      patience: 1,
      confidence: 1,
      maxTimesteps: 10,
      rule: 'asked',
    });
    expect(auto.timesteps).toBeLessThan(10);
    expect(auto.steps).toHaveLength(auto.timesteps + 1);
    expect(auto.steps).toEqual(fixed.steps.slice(0, auto.timesteps + 1));
    expect(auto.prediction.index).toBe(fixed.steps[auto.timesteps].index);
    // The rule, replayed on the fixed request's trajectory, stops at the same timestep.
    const trajectory = fixed.steps.map((s: { topk: { index: number }[]; errors: object }) => {
      const logits = new Float32Array(10);
      logits[s.topk[0]!.index] = 1;
      return { logits, errors: Object.values(s.errors) as number[] };
    });
    expect(stoppingPoint(trajectory, { tolerance: 0.05, patience: 1 }, 10).t).toBe(auto.timesteps);
    // A request that names no rule gets the profile's, which stops sooner: its confidence gate.
    expect((await classify('timesteps=auto')).json().timesteps).toBeLessThan(auto.timesteps);
  });

  it("names the gate's statistic beside the gate, so that a gated answer explains itself", async () => {
    const { stop, steps } = (await classify('timesteps=auto')).json();
    // the shipped profile's calibrated rule has a start gate
    expect(typeof stop.gate).toBe('number');
    // the gate reads the corruption score's normalisation, signed: by hand from the t = 0 errors
    const norm = (await readManifest(DEFAULT_MODEL)).corruptionScore!;
    const errors = Object.values(steps[0].errors) as number[];
    const z = Math.max(...norm.logErrorMean.map((m, i) => (Math.log(errors[i]!) - m) / norm.logErrorStd[i]!));
    expect(stop.gateZ).toBeCloseTo(z, 3);
    expect(stop.reason === 'gated').toBe(stop.gateZ <= stop.gate);
  });

  it('stops a confident sample whose errors still move, where the rule replayed on a fixed request does', async () => {
    const query = 'timesteps=auto&max_timesteps=10&tolerance=0.000001&confidence=0.5&patience=2&topk=10';
    const auto = (await classify(query)).json();
    const fixed = (await classify('timesteps=10&topk=10')).json();
    // The full distribution of each step, from the fixed request's probabilities.
    const trajectory = fixed.steps.map(
      (s: { topk: { index: number; probability: number }[]; errors: object }) => {
        const logits = new Float32Array(10);
        for (const c of s.topk) logits[c.index] = Math.log(c.probability);
        return { logits, errors: Object.values(s.errors) as number[] };
      },
    );
    const expected = stoppingPoint(trajectory, { tolerance: 0.000001, patience: 2, confidence: 0.5 }, 10);
    expect(expected).toEqual({ t: 2, reason: 'settled' }); // the sample is sure of itself from t = 0
    expect(auto).toMatchObject({ timesteps: 2, stop: { reason: 'settled', confidence: 0.5, rule: 'asked' } });
    expect(auto.steps).toEqual(fixed.steps.slice(0, 3));
  });

  it("uses the profile's rule and cap when the request names none, and reports reaching the cap", async () => {
    const manifest = await readManifest(DEFAULT_MODEL);
    const { tolerance, patience, confidence, maxTimesteps, gate } =
      manifest.profiles[manifest.defaultProfile]!.anytime!;
    const calibrated = {
      tolerance,
      patience,
      maxTimesteps,
      ...(confidence !== undefined ? { confidence } : {}),
      ...(gate !== undefined ? { gate, gateZ: expect.any(Number) } : {}),
    };
    const body = (await classify('timesteps=auto')).json();
    expect(body.stop).toEqual({
      reason: expect.stringMatching(/settled|cap|gated/),
      ...calibrated,
      rule: 'calibrated',
    });
    expect(body.timesteps).toBeLessThanOrEqual(body.stop.maxTimesteps);
    const capped = (await classify('timesteps=auto&max_timesteps=1&tolerance=0.000001&confidence=1')).json();
    expect(capped).toMatchObject({ timesteps: 1, stop: { reason: 'cap', maxTimesteps: 1 } });
  });

  it('streams the steps, then a result that says why it stopped', async () => {
    const res = await classify('timesteps=auto&tolerance=0.05', 'application/x-ndjson');
    const lines = res.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const result = lines.at(-1);
    expect(result).toMatchObject({ type: 'result', stop: { reason: 'settled' } });
    expect(lines.filter((l) => l.type === 'step')).toHaveLength(result.timesteps + 1);
  });

  it.each([
    ['timesteps=auto&max_timesteps=17', /max_timesteps must be at most 16/],
    ['timesteps=auto&tolerance=0', /tolerance must be above 0/],
    ['timesteps=auto&tolerance=2', /tolerance must be at most 1/],
    ['timesteps=auto&tolerance=fast', /tolerance must be a number/],
    ['timesteps=auto&patience=0', /patience must be at least 1/],
    ['timesteps=auto&confidence=0', /confidence must be above 0/],
    ['timesteps=auto&confidence=1.5', /confidence must be at most 1/],
    ['timesteps=4&confidence=0.5', /go with timesteps=auto/],
    ['timesteps=auto&max_timesteps=2&patience=3', /patience must be a whole number from 1 to the cap \(2\)/],
    ['timesteps=4&tolerance=0.1', /go with timesteps=auto/],
    ['timesteps=automatic', /timesteps must be a whole number between 0 and 16, or auto/],
    ['timesteps=auto&settle=1', /unknown parameter\(s\) 'settle'/],
  ])('400 for %s', async (query, message) => {
    const res = await classify(query);
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(message);
  });
});

describe('V2 parameters.timesteps "auto"', () => {
  // Between the golden cases' error changes at t = 3: some settle at t = 3, the others at 4.
  const rule = { tolerance: 0.0069, patience: 1, confidence: 1 };

  it('stops each sample of a batch where the reference settles; earlier stops repeat their last step', async () => {
    const cases = golden.cases.slice(0, 8);
    const res = await infer({
      parameters: { timesteps: 'auto', profile: 'exported', max_timesteps: 10, ...rule },
      inputs: [
        { name: 'input', shape: [8, 1, 28, 28], datatype: 'FP32', data: cases.flatMap((c) => c.input) },
      ],
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    const expected = cases.map(
      (c) =>
        stoppingPoint(
          c.logits.map((logits, t) => ({ logits, errors: c.errors[t]! })),
          rule,
          10,
        ).t,
    );
    expect(new Set(expected).size).toBeGreaterThan(1);
    const steps = Math.max(...expected) + 1;
    expect(body.parameters).toEqual({
      timesteps: steps - 1,
      profile: 'exported',
      max_timesteps: 10,
      ...rule,
      rule: 'asked',
    });
    const [probs, , , stopped, score] = body.outputs;
    expect(score).toMatchObject({ name: 'corruption_score', datatype: 'FP32', shape: [8] });
    expect(stopped).toEqual({ name: 'timesteps', datatype: 'INT64', shape: [8], data: expected });
    expect(probs.shape).toEqual([8, steps, 10]);
    cases.forEach((c, n) => {
      for (let t = 0; t < steps; t++) {
        const reference = softmax(c.logits[Math.min(t, expected[n]!)]!);
        const got = probs.data.slice((n * steps + t) * 10, (n * steps + t + 1) * 10);
        got.forEach((p: number, k: number) => expect(p).toBeCloseTo(reference[k]!, 4));
      }
    });
  });

  it.each([
    [{ timesteps: 'auto', tolerance: 0 }, /parameters\.tolerance must be above 0/],
    [{ timesteps: 'auto', max_timesteps: 17 }, /parameters\.max_timesteps must be at most 16/],
    [{ timesteps: 'soon' }, /parameters\.timesteps must be a whole number or "auto"/],
    [{ timesteps: 3, patience: 2 }, /go with timesteps=auto/],
  ])('400 for %o', async (parameters, message) => {
    const input = { name: 'input', shape: [1, 28, 28], datatype: 'FP32', data: golden.cases[0]!.input };
    const res = await infer({ parameters, inputs: [input] });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(message);
  });
});

/** A schema that allows the string "auto" (as a const, or as the enum @fastify/swagger makes of one). */
const offersAuto = (s: { const?: unknown; enum?: unknown[] }) =>
  s.const === 'auto' || s.enum?.includes('auto');

describe('the API document', () => {
  it('offers auto for timesteps, with its cap and rule, on /classify and V2', async () => {
    const doc = (await app.inject('/openapi.json')).json();
    const params = doc.paths['/classify'].post.parameters as { name: string; schema: { anyOf?: object[] } }[];
    const timesteps = params.find((p) => p.name === 'timesteps')!;
    expect(timesteps.schema.anyOf?.some(offersAuto)).toBe(true);
    expect(params.map((p) => p.name)).toEqual(
      expect.arrayContaining(['max_timesteps', 'tolerance', 'patience', 'confidence']),
    );
    const v2 = doc.paths['/v2/models/{name}/infer'].post.requestBody.content['application/json'].schema;
    expect(v2.properties.parameters.properties.timesteps.anyOf.some(offersAuto)).toBe(true);
    const result = doc.paths['/classify'].post.responses['200'].content['application/json'].schema;
    expect(Object.keys(result.properties)).toEqual(expect.arrayContaining(['stop', 'corruptionScore']));
    expect(Object.keys(result.properties.stop.properties)).toEqual(
      expect.arrayContaining(['reason', 'tolerance', 'patience', 'confidence', 'maxTimesteps', 'rule']),
    );
    expect(Object.keys(v2.properties.parameters.properties)).toContain('confidence');
  });
});
