/**
 * Hyperparameter profiles: a request may name one of the model's profiles; its numbers equal
 * those of a model exported with those hyperparameters (the path the PyTorch goldens verify),
 * alone or sharing a batch with requests on other profiles. GET /models describes them.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

const FEEDBACK = [
  { beta: 0.5, lambda: 0.5, alpha: 0 },
  { beta: 1, lambda: 0, alpha: 0 },
  { beta: 0.7, lambda: 0, alpha: 0.05 },
];

let dir: string;
let withProfiles: FastifyInstance;
let exportedAsFeedback: FastifyInstance;
let sample: Buffer;
let original: Record<string, unknown> & { pcoders: { hyperparameters: unknown }[] };

async function modelCopy(name: string, edit: (m: typeof original) => void): Promise<string> {
  const out = path.join(dir, name);
  await cp(DEFAULT_MODEL, out, { recursive: true });
  const m = structuredClone(original);
  edit(m);
  await writeFile(path.join(out, 'manifest.json'), JSON.stringify(m));
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'predify-profiles-'));
  original = JSON.parse(await readFile(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8'));
  const a = await modelCopy('with-profiles', (m) => {
    delete m['recommendedTimesteps'];
    delete m['anytime']; // fixed timesteps by default: what this model's tests are about
    m['profiles'] = {
      feedback: {
        description: 'feedback into the first PCoder',
        hyperparameters: FEEDBACK,
        recommendedTimesteps: 3,
      },
    };
    m['defaultProfile'] = 'exported';
  });
  const b = await modelCopy('exported-as-feedback', (m) => {
    delete m['profiles'];
    delete m['defaultProfile'];
    m.pcoders.forEach((pc, i) => (pc.hyperparameters = FEEDBACK[i]));
  });
  ({ app: withProfiles } = await buildTestApp({ BATCH_MAX_DELAY_MS: '50' }, { modelDir: a }));
  ({ app: exportedAsFeedback } = await buildTestApp({}, { modelDir: b }));
  sample = await readFile(path.join(SAMPLES, '0004-shirt.png'));
});
afterAll(async () => {
  await withProfiles.close();
  await exportedAsFeedback.close();
  await rm(dir, { recursive: true, force: true });
});

const classify = (app: FastifyInstance, query: string) =>
  app.inject({
    method: 'POST',
    url: `/classify?${query}`,
    headers: { 'content-type': 'image/png' },
    payload: sample,
  });

const probabilities = (body: { steps: { topk: { probability: number }[] }[] }) =>
  body.steps.map((s) => s.topk.map((c) => c.probability));

describe('profile=', () => {
  it('runs the named profile exactly as a model exported with its hyperparameters', async () => {
    const viaProfile = (await classify(withProfiles, 'timesteps=6&topk=10&profile=feedback')).json();
    const reference = (await classify(exportedAsFeedback, 'timesteps=6&topk=10')).json();
    expect(viaProfile.profile).toBe('feedback');
    expect(probabilities(viaProfile)).toEqual(probabilities(reference));
    const errors = (body: { steps: { errors: Record<string, number> }[] }) => body.steps.map((s) => s.errors);
    expect(errors(viaProfile)).toEqual(errors(reference));
  });

  it('changes the dynamics but not the feedforward pass', async () => {
    const exported = (await classify(withProfiles, 'timesteps=6&topk=10&profile=exported')).json();
    const feedback = (await classify(withProfiles, 'timesteps=6&topk=10&profile=feedback')).json();
    expect(probabilities(feedback)[0]).toEqual(probabilities(exported)[0]);
    expect(probabilities(feedback)[6]).not.toEqual(probabilities(exported)[6]);
  });

  it('gives each request of a shared batch its own profile', async () => {
    const [alone] = await Promise.all([classify(withProfiles, 'timesteps=6&topk=10&profile=feedback')]);
    const mixed = await Promise.all(
      ['feedback', 'exported', 'feedback', 'exported'].map((p) =>
        classify(withProfiles, `timesteps=6&topk=10&profile=${p}`),
      ),
    );
    const exported = (await classify(withProfiles, 'timesteps=6&topk=10')).json();
    expect(probabilities(mixed[0]!.json())).toEqual(probabilities(alone!.json()));
    expect(probabilities(mixed[2]!.json())).toEqual(probabilities(alone!.json()));
    expect(probabilities(mixed[1]!.json())).toEqual(probabilities(exported));
  });

  it('uses the profile’s recommended timesteps when the request names none', async () => {
    const body = (await classify(withProfiles, 'profile=feedback')).json();
    expect(body.timesteps).toBe(3);
    expect(body.steps).toHaveLength(4);
  });

  it.each([
    ['profile=robustest', /the model has no profile 'robustest': it has exported, feedback/],
    ['profile=feedback&profile=exported', /profile must be given once/],
    ['profile=', /the model has no profile '': it has exported, feedback/],
  ])('400 for %s', async (query, message) => {
    const res = await classify(withProfiles, query);
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(message);
  });
});

describe('GET /models', () => {
  it('lists the profiles with their hyperparameters and recommended timesteps', async () => {
    const [m] = (await withProfiles.inject('/models')).json().models;
    expect(m.defaultProfile).toBe('exported');
    expect(m.profiles.map((p: { name: string }) => p.name)).toEqual(['exported', 'feedback']);
    expect(m.profiles[1]).toMatchObject({
      hyperparameters: FEEDBACK,
      recommendedTimesteps: 3,
      defaultTimesteps: 3,
    });
    expect(m.profiles[0]).toMatchObject({ recommendedTimesteps: null, defaultTimesteps: 8 });
  });

  it('lets DEFAULT_TIMESTEPS override the recommendation', async () => {
    const { app } = await buildTestApp(
      { DEFAULT_TIMESTEPS: '5' },
      { modelDir: path.join(dir, 'with-profiles') },
    );
    const [m] = (await app.inject('/models')).json().models;
    expect(m.profiles[1].defaultTimesteps).toBe(5);
    expect((await classify(app, 'profile=feedback')).json().timesteps).toBe(5);
    await app.close();
  });

  it('advertises the cap auto runs to under MAX_TIMESTEPS, and the calibrated one it lowered', async () => {
    const { app } = await buildTestApp({ DEFAULT_TIMESTEPS: 'auto', MAX_TIMESTEPS: '2' });
    const [m] = (await app.inject('/models')).json().models;
    const robust = m.profiles.find((p: { name: string }) => p.name === 'robust');
    expect(robust.defaultTimesteps).toBe('auto');
    expect(robust.anytime.maxTimesteps).toBe(2);
    expect(robust.anytime.calibratedMaxTimesteps).toBeGreaterThan(2);
    expect(m.profiles.length).toBeGreaterThan(1);
    expect(m.profiles.every((p: { defaultTimesteps: unknown }) => p.defaultTimesteps === 'auto')).toBe(true);
    const answer = (await classify(app, 'profile=exported')).json();
    expect(answer.stop.maxTimesteps).toBe(2);
    await app.close();
  });
});

describe('manifest profiles', () => {
  // Thunks: the table is built before beforeAll has read the manifest.
  const withProfile =
    (profile: unknown, extra: Record<string, unknown> = {}) =>
    () => ({ ...original, profiles: { p: profile }, ...extra });
  it.each([
    [
      'one set too few',
      withProfile({ hyperparameters: FEEDBACK.slice(0, 2) }),
      /profiles\.p\.hyperparameters: needs one set per PCoder \(3\)/,
    ],
    [
      'beta + lambda over 1',
      withProfile({ hyperparameters: [{ beta: 0.9, lambda: 0.2, alpha: 0 }, FEEDBACK[1], FEEDBACK[2]] }),
      /profiles\.p\.hyperparameters\.0: beta \+ lambda must not exceed 1/,
    ],
    [
      'an unknown default',
      withProfile({ hyperparameters: FEEDBACK }, { defaultProfile: 'q' }),
      /defaultProfile: names profile 'q'/,
    ],
    [
      'the reserved name',
      () => ({ ...original, profiles: { exported: { hyperparameters: FEEDBACK } } }),
      /profiles\.exported: is reserved/,
    ],
    [
      'a corruption score without one statistic per PCoder',
      () => ({ ...original, corruptionScore: { logErrorMean: [0, 0], logErrorStd: [1, 1, 1] } }),
      /corruptionScore\.logErrorMean: needs one value per PCoder \(3\)/,
    ],
    [
      'a corruption score with a standard deviation of 0',
      () => ({ ...original, corruptionScore: { logErrorMean: [0, 0, 0], logErrorStd: [1, 0, 1] } }),
      /corruptionScore\.logErrorStd\.1/,
    ],
  ])('refuses %s', (_name, raw, message) => {
    expect(() => parseManifest(raw(), 'manifest.json')).toThrow(message);
  });
});
