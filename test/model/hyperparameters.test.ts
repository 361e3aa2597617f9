/**
 * The hyperparameter rule: the cases in test/fixtures/hyperparameter-cases.json are accepted,
 * refused and normalised the same way here as by the Python exporter
 * (scripts/tests/test_hyperparameters.py reads the same file).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  coefficientsOf,
  hyperparameterProblems,
  normaliseHyperparameters,
  type Hyperparameters,
} from '../../src/model/hyperparameters.js';
import { parseManifest } from '../../src/model/manifest.js';
import { DEFAULT_MODEL, ROOT } from '../paths.js';

interface Case {
  name: string;
  sets: Hyperparameters[];
  normalised?: Hyperparameters[];
  refused?: number[];
}
const { cases } = JSON.parse(
  readFileSync(path.join(ROOT, 'test', 'fixtures', 'hyperparameter-cases.json'), 'utf8'),
) as { cases: Case[] };
const manifest = JSON.parse(readFileSync(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8')) as {
  pcoders: { hyperparameters: Hyperparameters }[];
};

describe('the hyperparameter rule', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    if (c.normalised) {
      expect(hyperparameterProblems(c.sets)).toEqual([]);
      expect(normaliseHyperparameters(c.sets)).toEqual(c.normalised);
    } else {
      expect(hyperparameterProblems(c.sets).map((p) => p.pcoder + 1)).toEqual(c.refused);
      expect(() => normaliseHyperparameters(c.sets)).toThrow(new RegExp(`PCoder ${c.refused![0]}:`));
    }
  });

  it('is the rule the manifest applies, to the exported values and to every profile', () => {
    for (const c of cases.filter((c) => c.sets.length === 3)) {
      const raw = structuredClone(manifest) as Record<string, unknown> & typeof manifest;
      raw.pcoders.forEach((pc, i) => (pc.hyperparameters = c.sets[i]!));
      raw['profiles'] = { p: { hyperparameters: c.sets } };
      raw['defaultProfile'] = 'p';
      if (c.normalised) {
        const parsed = parseManifest(raw, 'manifest.json');
        expect(parsed.pcoders.map((pc) => pc.hyperparameters)).toEqual(c.normalised);
        expect(parsed.profiles['p']!.hyperparameters).toEqual(c.normalised);
      } else {
        expect(() => parseManifest(raw, 'manifest.json')).toThrow(/hyperparameters/);
      }
    }
  });

  it('gives the top PCoder memory 1 - beta and no feedback, whatever lambda it was given', () => {
    const sets = [
      { beta: 0.8, lambda: 0.1, alpha: 0.01 },
      { beta: 0.7, lambda: 0.3, alpha: 0.02 },
    ];
    expect(coefficientsOf(sets, [2, 10])).toEqual([
      { feedforward: 0.8, feedback: 0.1, memory: 1 - 0.8 - 0.1, errorCorrection: 0.02 },
      { feedforward: 0.7, feedback: 0, memory: 1 - 0.7, errorCorrection: 0.2 },
    ]);
  });
});
