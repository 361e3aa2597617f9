/** What a request that leaves things out runs with, and the errors for what cannot run. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRequest, type RequestDefaults } from '../../src/engine/resolve-request.js';
import { parseManifest } from '../../src/model/manifest.js';
import { DEFAULT_MODEL } from '../paths.js';

const raw = JSON.parse(readFileSync(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8')) as Record<
  string,
  unknown
>;
const manifest = parseManifest({ ...raw, recommendedTimesteps: 3 }, 'manifest.json');
const defaults: RequestDefaults = { maxTimesteps: 16, defaultTopk: 5 };
const robust = manifest.profiles['robust']!.recommendedTimesteps!;

describe('resolveRequest', () => {
  it('fills in the default profile, its recommended timesteps and the default top-k', () => {
    expect(resolveRequest(manifest, defaults, {})).toEqual({ profile: 'robust', timesteps: robust, topk: 5 });
    expect(resolveRequest(manifest, defaults, { profile: 'exported' }).timesteps).toBe(3);
  });

  it('lets DEFAULT_TIMESTEPS override the recommendation, and caps defaults at the maximum', () => {
    expect(resolveRequest(manifest, { ...defaults, defaultTimesteps: 7 }, {}).timesteps).toBe(7);
    expect(
      resolveRequest(manifest, { ...defaults, maxTimesteps: 2 }, { profile: 'exported' }).timesteps,
    ).toBe(2);
  });

  it('keeps what the request names, top-k at most the number of classes', () => {
    expect(resolveRequest(manifest, defaults, { profile: 'exported', timesteps: 0, topk: 99 })).toEqual({
      profile: 'exported',
      timesteps: 0,
      topk: 10,
    });
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
});
