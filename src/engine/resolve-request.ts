/**
 * What a classification request runs with, decided in one place for every entry point
 * (/classify and its streams, V2, the CLI): the profile (the model's default if none), the
 * timesteps (the configured default, else the profile's recommendation, else 8, never above
 * the maximum) and how many classes each timestep lists (never more than the model has).
 */
import { errors } from '../errors.js';
import { profilesOf, type Manifest } from '../model/manifest.js';

/** The service's settings that shape a request that leaves something out. */
export interface RequestDefaults {
  /** timesteps of a request that names none; unset: the profile's recommendation */
  defaultTimesteps?: number | undefined;
  maxTimesteps: number;
  defaultTopk: number;
}

export interface AskedRequest {
  profile?: string | undefined;
  timesteps?: number | undefined;
  topk?: number | undefined;
}

export interface ResolvedRequest {
  profile: string;
  timesteps: number;
  topk: number;
}

/** Timesteps of a request that names none, when neither config nor model recommends any. */
export const FALLBACK_TIMESTEPS = 8;

/** The timesteps a request on a profile with `recommended` timesteps gets when it names none. */
export const timestepsFor = (defaults: RequestDefaults, recommended: number | undefined) =>
  Math.min(defaults.defaultTimesteps ?? recommended ?? FALLBACK_TIMESTEPS, defaults.maxTimesteps);

export function resolveRequest(
  manifest: Manifest,
  defaults: RequestDefaults,
  asked: AskedRequest,
  profiles = profilesOf(manifest),
): ResolvedRequest {
  const profile = asked.profile ?? manifest.defaultProfile;
  const found = profiles[profile];
  if (!found) throw errors.unknownProfile(profile, Object.keys(profiles));
  const timesteps = asked.timesteps ?? timestepsFor(defaults, found.recommendedTimesteps);
  if (!Number.isInteger(timesteps) || timesteps < 0 || timesteps > defaults.maxTimesteps)
    throw errors.timestepsOutOfRange(timesteps, defaults.maxTimesteps);
  const classes = manifest.labels.length;
  const topk = Math.min(Math.max(1, Math.floor(asked.topk ?? defaults.defaultTopk)), classes);
  return { profile, timesteps, topk };
}
