/**
 * The adversarial studies' TypeScript side: Square Attack within its budget and radius, the
 * black-box comparison through a real server on loopback (both attacker views, counted), the
 * loopback-only rule, the bootstrap of per-image outcomes, and the refusal of a run that
 * scripts/attack.py did not make. (scripts/tests/test_attack.py covers the white-box attacks and
 * their scoring by the engine.)
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { bootstrapMeans, readAttackRun } from '../../src/robustness/adversarial-study.js';
import { blackboxStudy, httpQuery, loopbackUrl } from '../../src/robustness/blackbox-study.js';
import { readImageSet } from '../../src/robustness/image-set.js';
import { attackerLoss, squareAttack, type ApiAnswer } from '../../src/robustness/square-attack.js';
import { ImageSetError } from '../../src/robustness/image-set.js';
import type { Manifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';

const shape = { height: 8, width: 8, channels: 1 };

/** A stand-in classifier: class 1 once the image's mean rises above `threshold`, else class 0. */
function meanClassifier(threshold: number, steps = 1) {
  let calls = 0;
  const query = async (pixels: Uint8Array): Promise<ApiAnswer> => {
    calls++;
    const mean = pixels.reduce((s, v) => s + v, 0) / pixels.length;
    const p1 = 1 / (1 + Math.exp(-(mean - threshold) / 2));
    return { steps: Array.from({ length: steps }, () => Float64Array.from([1 - p1, p1])) };
  };
  return { query, calls: () => calls };
}

describe('Square Attack', () => {
  it('fools an easy classifier, counting its queries, and never leaves the radius or 8 bits', async () => {
    const clean = new Uint8Array(64).fill(100);
    const model = meanClassifier(105);
    const r = await squareAttack(clean, shape, 0, model.query, {
      epsilon: 10,
      budget: 200,
      pInit: 0.3,
      seed: 1,
      view: 'final',
    });
    expect(r.queries).toBeDefined();
    expect(r.queries).toBe(model.calls());
    const mean = r.adversarial.reduce((s, v) => s + v, 0) / 64;
    expect(mean).toBeGreaterThan(105);
    for (let k = 0; k < 64; k++) expect(Math.abs(r.adversarial[k]! - clean[k]!)).toBeLessThanOrEqual(10);
  });

  it('stops at its budget when the classifier cannot be fooled within the radius', async () => {
    const model = meanClassifier(200);
    const r = await squareAttack(new Uint8Array(64).fill(250), shape, 1, model.query, {
      epsilon: 5,
      budget: 25,
      pInit: 0.3,
      seed: 1,
      view: 'final',
    });
    expect(r.queries).toBeUndefined();
    expect(r.spent).toBe(25);
    expect(model.calls()).toBe(25);
  });

  it("reads the last step alone, or the mean of every step's margin", () => {
    const answer = { steps: [Float64Array.from([0.9, 0.1]), Float64Array.from([0.5, 0.5])] };
    expect(attackerLoss(answer, 0, 'final')).toBeCloseTo(0, 12);
    expect(attackerLoss(answer, 0, 'timesteps')).toBeCloseTo(Math.log(9) / 2, 12);
  });
});

describe('the black-box comparison through a server on loopback', () => {
  let app: FastifyInstance;
  let url: URL;
  let manifest: Manifest;
  beforeAll(async () => {
    const built = await buildTestApp();
    app = built.app;
    manifest = built.state.models!.default.manifest;
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    url = new URL(address);
  });
  afterAll(() => app.close());

  it('runs both attacker views on the same images and counts their queries', async () => {
    const set = await readImageSet('fashion-mnist', {
      labels: manifest.labels,
      perClass: 1,
      fashion: { split: 't10k', part: 'dev' },
    });
    const images = set.clean.slice(0, 4).map((im) => ({
      id: im.id,
      label: im.label,
      pixels: (im.source as { pixels: Uint8Array }).pixels,
    }));
    const report = await blackboxStudy({
      images,
      shape: manifest.input,
      views: ['final', 'timesteps'],
      square: { epsilon: 25, budget: 12, pInit: 0.1 },
      seed: 0,
      concurrency: 2,
      query: httpQuery(url, manifest, { timesteps: '2' }),
    });
    expect(report.attacked + report.wrongFromStart.length).toBe(4);
    for (const view of ['final', 'timesteps']) {
      const v = report.views[view]!;
      expect(v.perImage).toHaveLength(report.attacked);
      for (const q of v.perImage.filter((x) => x !== null)) {
        expect(q).toBeGreaterThanOrEqual(1);
        expect(q).toBeLessThanOrEqual(12);
      }
      expect(v.successAtBudget.value).toBeGreaterThanOrEqual(0);
    }
    expect(report.paired?.of).toBe('timesteps less final');
    // at least the first query of every image and view, and never beyond the budgets
    expect(report.queries).toBeGreaterThanOrEqual(4 + 2 * report.attacked);
    expect(report.queries).toBeLessThanOrEqual(4 + 2 * 12 * report.attacked);
  });

  it('asks for every timestep the request names', async () => {
    const answer = await httpQuery(url, manifest, { timesteps: '3' })(new Uint8Array(28 * 28).fill(30));
    expect(answer.steps).toHaveLength(4);
    for (const p of answer.steps) expect(p.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 4);
  });
});

describe('what the attacks may reach', () => {
  it('accepts loopback servers only', () => {
    for (const ok of [
      'http://127.0.0.1:8080',
      'http://127.9.0.1',
      'http://localhost:3000',
      'http://[::1]:8080',
    ])
      expect(loopbackUrl(ok).href).toContain(new URL(ok).host);
    for (const bad of ['http://10.0.0.1:8080', 'https://example.com', 'file:///etc/passwd', 'not a url'])
      expect(() => loopbackUrl(bad)).toThrow(ImageSetError);
  });

  it('refuses a run scripts/attack.py did not make', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'attack-run-'));
    await expect(readAttackRun(dir)).rejects.toThrow(/no attack.json/);
    await writeFile(path.join(dir, 'attack.json'), JSON.stringify({ format: 'predify-attack', version: 1 }));
    await expect(readAttackRun(dir)).rejects.toThrow(/not a run of scripts\/attack.py: model/);
  });
});

describe('bootstrapMeans', () => {
  it('gives each t its mean, and an interval that brackets it, paired over images', () => {
    const rows = Array.from({ length: 200 }, (_, i) => [i % 2, 1, (i % 2) - 1]);
    const [a, b, c] = bootstrapMeans(rows);
    expect(a!.value).toBe(0.5);
    expect(a!.interval95[0]).toBeLessThan(0.5);
    expect(a!.interval95[1]).toBeGreaterThan(0.5);
    expect(b).toEqual({ value: 1, interval95: [1, 1] });
    // the difference of two series on the same draw: its interval is the first's, shifted
    expect(c!.interval95[0]).toBeCloseTo(a!.interval95[0] - 1, 10);
  });
});
