/**
 * What a classification request runs with, decided in one place for every entry point
 * (/classify and its streams, V2, the CLI): the profile (the model's default if none), the
 * timesteps (the configured default, else the profile's recommendation, else 8, never above
 * the maximum) and how many classes each timestep lists (never more than the model has).
 *
 * `timesteps: 'auto'` runs until the sample's dynamics settle (src/engine/settling.ts), at
 * most to a cap: the request's own rule parameters, else the profile's calibrated ones, else
 * the service's defaults.
 */
import { errors } from '../errors.js';
import { profilesOf, type Manifest } from '../model/manifest.js';
import { settleRuleProblem, type SettleRule } from './settling.js';

/** The service's settings that shape a request that leaves something out. */
export interface RequestDefaults {
  /** timesteps of a request that names none; unset: what the profile says */
  defaultTimesteps?: number | 'auto' | undefined;
  maxTimesteps: number;
  defaultTopk: number;
  /** the cap of an anytime request that names none, where its profile has none */
  autoMaxTimesteps: number;
}

export interface AskedRequest {
  profile?: string | undefined;
  timesteps?: number | 'auto' | undefined;
  topk?: number | undefined;
  /** anytime only: the cap, and the rule's parameters */
  maxTimesteps?: number | undefined;
  tolerance?: number | undefined;
  patience?: number | undefined;
  confidence?: number | undefined;
}

export interface ResolvedRequest {
  profile: string;
  /** the last timestep to compute; with `settle`, the cap */
  timesteps: number;
  topk: number;
  /** anytime: stop when the sample's dynamics settle */
  settle?: SettleRule;
  /** anytime: where the rule came from (a request that sets tolerance or patience: 'asked') */
  ruleSource?: RuleSource;
}

export type RuleSource = 'asked' | 'calibrated' | 'default';

/** The rule of a profile that has none calibrated (measured: docs/anytime.md). */
export const DEFAULT_SETTLE: SettleRule = { tolerance: 0.1, patience: 1 };

/** Timesteps of a request that names none, when neither config nor model recommends any. */
export const FALLBACK_TIMESTEPS = 8;

/** The timesteps a request on a profile with `recommended` timesteps gets when it names none. */
export const timestepsFor = (defaults: RequestDefaults, recommended: number | undefined) =>
  Math.min(
    (typeof defaults.defaultTimesteps === 'number' ? defaults.defaultTimesteps : undefined) ??
      recommended ??
      FALLBACK_TIMESTEPS,
    defaults.maxTimesteps,
  );

/**
 * Whether a request on `profile` that names no timesteps runs timesteps=auto: the operator set
 * DEFAULT_TIMESTEPS=auto, or left it unset and the profile's calibrated rule says so.
 */
export const autoByDefault = (
  defaults: RequestDefaults,
  profile: { anytime?: { default?: boolean } } | undefined,
) =>
  defaults.defaultTimesteps === 'auto' ||
  (defaults.defaultTimesteps === undefined && profile?.anytime?.default === true);

/** The cap timesteps=auto runs to on a profile that calibrated `calibrated` (MAX_TIMESTEPS wins). */
export const autoCap = (defaults: RequestDefaults, calibrated: number | undefined) =>
  Math.min(calibrated ?? defaults.autoMaxTimesteps, defaults.maxTimesteps);

export function resolveRequest(
  manifest: Manifest,
  defaults: RequestDefaults,
  asked: AskedRequest,
  profiles = profilesOf(manifest),
): ResolvedRequest {
  const profile = asked.profile ?? manifest.defaultProfile;
  const found = profiles[profile];
  if (!found) throw errors.unknownProfile(profile, Object.keys(profiles));
  const classes = manifest.labels.length;
  // The one rule for topk, on every path: asked, it must fit the model; the service's default
  // is cut to the model's classes.
  if (asked.topk !== undefined && !(Number.isInteger(asked.topk) && asked.topk >= 1 && asked.topk <= classes))
    throw errors.topkOutOfRange(asked.topk, classes);
  const topk = asked.topk ?? Math.min(defaults.defaultTopk, classes);
  const wanted = asked.timesteps ?? (autoByDefault(defaults, found) ? 'auto' : undefined);
  if (wanted !== 'auto') {
    if ([asked.maxTimesteps, asked.tolerance, asked.patience, asked.confidence].some((v) => v !== undefined))
      throw errors.settleInvalid('max_timesteps, tolerance, patience and confidence go with timesteps=auto');
    const timesteps = wanted ?? timestepsFor(defaults, found.recommendedTimesteps);
    checkTimesteps(timesteps, defaults.maxTimesteps);
    return { profile, timesteps, topk };
  }
  const calibrated = found.anytime;
  // The request's own cap must be allowed; the profile's or the service's is kept within it.
  if (asked.maxTimesteps !== undefined) checkTimesteps(asked.maxTimesteps, defaults.maxTimesteps);
  const timesteps = asked.maxTimesteps ?? autoCap(defaults, calibrated?.maxTimesteps);
  const confidence = asked.confidence ?? calibrated?.confidence;
  const settle: SettleRule = {
    tolerance: asked.tolerance ?? calibrated?.tolerance ?? DEFAULT_SETTLE.tolerance,
    patience: asked.patience ?? calibrated?.patience ?? DEFAULT_SETTLE.patience,
    ...(confidence !== undefined ? { confidence } : {}),
  };
  const ruleSource: RuleSource =
    asked.tolerance !== undefined || asked.patience !== undefined || asked.confidence !== undefined
      ? 'asked'
      : calibrated
        ? 'calibrated'
        : 'default';
  // The calibrated gate belongs to the calibrated rule: a request that asks for its own rule
  // asks for dynamics, and gets them for every input.
  if (ruleSource === 'calibrated' && calibrated?.gate !== undefined && manifest.corruptionScore)
    settle.gate = {
      logErrorMean: manifest.corruptionScore.logErrorMean,
      logErrorStd: manifest.corruptionScore.logErrorStd,
      above: calibrated.gate,
    };
  const problem = settleRuleProblem(settle, timesteps);
  if (problem) throw errors.settleInvalid(problem);
  return { profile, timesteps, topk, settle, ruleSource };
}

function checkTimesteps(timesteps: number, max: number): void {
  if (!Number.isInteger(timesteps) || timesteps < 0 || timesteps > max)
    throw errors.timestepsOutOfRange(timesteps, max);
}
