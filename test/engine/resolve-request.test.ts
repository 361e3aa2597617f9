/** What a request that leaves things out runs with, and the errors for what cannot run. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTLE, resolveRequest, type RequestDefaults } from '../../src/engine/resolve-request.js';
import { parseManifest } from '../../src/model/manifest.js';
import { DEFAULT_MODEL } from '../paths.js';

const raw = JSON.parse(readFileSync(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8')) as Record<
  string,
  unknown
>;
const manifest = parseManifest({ ...raw, recommendedTimesteps: 3 }, 'manifest.json');
const defaults: RequestDefaults = { maxTimesteps: 16, defaultTopk: 5, autoMaxTimesteps: 10 };
const robust = manifest.profiles['robust']!.recommendedTimesteps!;

describe('resolveRequest', () => {
  it('fills in the default profile, its recommended timesteps and the default top-k', () => {
    const fixedOnly = parseManifest(
      {
        ...raw,
        recommendedTimesteps: 3,
        anytime: undefined,
        profiles: { robust: { ...manifest.profiles['robust']!, anytime: undefined } },
      },
      'manifest.json',
    );
    expect(resolveRequest(fixedOnly, defaults, {})).toEqual({
      profile: 'robust',
      timesteps: robust,
      topk: 5,
    });
    expect(resolveRequest(fixedOnly, defaults, { profile: 'exported' }).timesteps).toBe(3);
  });

  it("runs auto when the profile's calibrated rule is its default, unless DEFAULT_TIMESTEPS is set", () => {
    const { maxTimesteps, ...rule } = manifest.profiles['robust']!.anytime!;
    expect(rule.default).toBe(true);
    const score = manifest.corruptionScore!;
    expect(resolveRequest(manifest, defaults, {})).toEqual({
      profile: 'robust',
      timesteps: maxTimesteps,
      topk: 5,
      settle: {
        tolerance: rule.tolerance,
        patience: rule.patience,
        confidence: rule.confidence,
        // the shipped rule is gated: iterated only where the errors rise above clean ones
        gate: { logErrorMean: score.logErrorMean, logErrorStd: score.logErrorStd, above: rule.gate },
      },
      ruleSource: 'calibrated',
    });
    // A request that names its timesteps gets them; an operator's default applies to every request.
    expect(resolveRequest(manifest, defaults, { timesteps: 4 })).toEqual({
      profile: 'robust',
      timesteps: 4,
      topk: 5,
    });
    expect(resolveRequest(manifest, { ...defaults, defaultTimesteps: 7 }, {})).toEqual({
      profile: 'robust',
      timesteps: 7,
      topk: 5,
    });
  });

  it('runs auto on every profile when DEFAULT_TIMESTEPS=auto, within MAX_TIMESTEPS', () => {
    const auto = { ...defaults, defaultTimesteps: 'auto' as const };
    const exported = resolveRequest(manifest, auto, { profile: 'exported' });
    expect(exported.settle).toMatchObject(DEFAULT_SETTLE);
    expect(exported.timesteps).toBe(defaults.autoMaxTimesteps);
    expect(resolveRequest(manifest, auto, {}).ruleSource).toBe('calibrated');
    // MAX_TIMESTEPS lowers the calibrated cap.
    expect(resolveRequest(manifest, { ...auto, maxTimesteps: 2 }, {}).timesteps).toBe(2);
    expect(resolveRequest(manifest, auto, { timesteps: 3 }).timesteps).toBe(3);
  });

  it('lets DEFAULT_TIMESTEPS override the recommendation, and caps defaults at the maximum', () => {
    expect(resolveRequest(manifest, { ...defaults, defaultTimesteps: 7 }, {}).timesteps).toBe(7);
    expect(
      resolveRequest(manifest, { ...defaults, maxTimesteps: 2 }, { profile: 'exported' }).timesteps,
    ).toBe(2);
  });

  it('keeps what the request names; a topk the model cannot give is refused, as on every path', () => {
    expect(resolveRequest(manifest, defaults, { profile: 'exported', timesteps: 0, topk: 10 })).toEqual({
      profile: 'exported',
      timesteps: 0,
      topk: 10,
    });
    for (const topk of [0, 11, 99, 1.5])
      expect(() => resolveRequest(manifest, defaults, { topk })).toThrow(
        expect.objectContaining({ code: 'PREDIFY_ERR_TOPK_OUT_OF_RANGE', statusCode: 400 }),
      );
    // the service's default is cut to the model's classes
    expect(resolveRequest(manifest, { ...defaults, defaultTopk: 50 }, {}).topk).toBe(10);
  });

  it('refuses an unknown profile and too many timesteps, each with its own code', () => {
    expect(() => resolveRequest(manifest, defaults, { profile: 'nope' })).toThrow(
      expect.objectContaining({
        code: 'PREDIFY_ERR_UNKNOWN_PROFILE',
        statusCode: 400,
        message: expect.stringContaining('exported, robust'),
      }),
    );
    expect(() => resolveRequest(manifest, defaults, { timesteps: 17 })).toThrow(
      expect.objectContaining({ code: 'PREDIFY_ERR_TIMESTEPS_OUT_OF_RANGE', statusCode: 400 }),
    );
  });

  describe('timesteps=auto', () => {
    const robustAnytime = { tolerance: 0.05, patience: 2, maxTimesteps: 6 };
    const calibrated = parseManifest(
      {
        ...raw,
        anytime: undefined, // the exported hyperparameters: no calibrated rule
        profiles: {
          ...(raw['profiles'] as object),
          robust: { ...manifest.profiles['robust']!, anytime: robustAnytime },
        },
      },
      'manifest.json',
    );

    it('takes the profile’s calibrated rule and cap, else the service’s defaults', () => {
      expect(resolveRequest(calibrated, defaults, { timesteps: 'auto' })).toMatchObject({
        timesteps: 6,
        settle: { tolerance: 0.05, patience: 2 },
        ruleSource: 'calibrated',
      });
      expect(resolveRequest(calibrated, defaults, { timesteps: 'auto', profile: 'exported' })).toMatchObject({
        timesteps: 10,
        settle: DEFAULT_SETTLE,
        ruleSource: 'default',
      });
      // A calibrated cap above the service's maximum is kept within it, not refused.
      expect(
        resolveRequest(calibrated, { ...defaults, maxTimesteps: 4 }, { timesteps: 'auto' }).timesteps,
      ).toBe(4);
    });

    it("carries the profile's calibrated gate, with the score's normalisation, to calibrated rules only", () => {
      const norm = { logErrorMean: [-1, -2, -3], logErrorStd: [0.5, 0.5, 0.5] };
      const gated = parseManifest(
        {
          ...raw,
          corruptionScore: norm,
          profiles: {
            ...(raw['profiles'] as object),
            robust: { ...manifest.profiles['robust']!, anytime: { ...robustAnytime, gate: 2 } },
          },
        },
        'manifest.json',
      );
      expect(resolveRequest(gated, defaults, { timesteps: 'auto' }).settle).toEqual({
        tolerance: 0.05,
        patience: 2,
        gate: { ...norm, above: 2 },
      });
      expect(
        resolveRequest(gated, defaults, { timesteps: 'auto', tolerance: 0.2 }).settle!.gate,
      ).toBeUndefined();
      // without a corruption score the gate cannot be read: the rule runs ungated
      const noScore = parseManifest({ ...gated, corruptionScore: undefined }, 'manifest.json');
      expect(resolveRequest(noScore, defaults, { timesteps: 'auto' }).settle!.gate).toBeUndefined();
    });

    it('lets the request name its cap and rule', () => {
      const asked = {
        timesteps: 'auto' as const,
        maxTimesteps: 3,
        tolerance: 0.2,
        patience: 3,
        confidence: 0.7,
      };
      expect(resolveRequest(calibrated, defaults, asked)).toMatchObject({
        timesteps: 3,
        settle: { tolerance: 0.2, patience: 3, confidence: 0.7 },
        ruleSource: 'asked',
      });
    });

    it.each([
      [{ timesteps: 'auto' as const, maxTimesteps: 17 }, 'PREDIFY_ERR_TIMESTEPS_OUT_OF_RANGE'],
      [{ timesteps: 'auto' as const, tolerance: 0 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 'auto' as const, tolerance: 1.5 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 'auto' as const, patience: 0 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 'auto' as const, confidence: 0 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 'auto' as const, confidence: 1.01 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 4, confidence: 0.5 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 'auto' as const, maxTimesteps: 2, patience: 3 }, 'PREDIFY_ERR_SETTLE_INVALID'],
      [{ timesteps: 4, tolerance: 0.1 }, 'PREDIFY_ERR_SETTLE_INVALID'],
    ])('refuses %o with %s', (asked, code) => {
      expect(() => resolveRequest(calibrated, defaults, asked)).toThrow(
        expect.objectContaining({ code, statusCode: 400 }),
      );
    });
  });
});
