/**
 * What the command-line tools share: parsing with usage on error, whole-number options, and
 * opening a model with the profile asked for.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino } from 'pino';
import { coefficientsOfProfile, profileCoefficients } from '../engine/profiles.js';
import { openStepper } from '../engine/open-stepper.js';
import { loadModel } from '../model/load-model.js';
import { profilesOf, readManifest, type Manifest } from '../model/manifest.js';

/** parseArgs that prints usage and exits 2 on a bad command line instead of throwing. */
export function parseCli<T extends ParseArgsConfig>(config: T, usage: string) {
  try {
    const parsed = parseArgs(config);
    if ((parsed.values as Record<string, unknown>)['help']) {
      console.log(usage);
      process.exit(0);
    }
    return parsed;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}

export function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) {
    console.error(`--${name} must be a whole number, got '${value}'`);
    process.exit(2);
  }
  return Number(value);
}

/**
 * Opens a model on the CPU for a command-line tool and resolves the hyperparameter profile it
 * asks for (the model's default if none); an unknown profile is a usage error (exit 2).
 */
export async function openModelWithProfile(dir: string, profile: string | undefined, threads = 2) {
  const model = await loadModel(
    dir,
    { providers: ['cpu'], intraOpThreads: threads },
    pino({ level: 'warn' }),
  );
  const chosen = resolveProfile(model.manifest, profile);
  if (!chosen) {
    await model.release();
    process.exit(2);
  }
  return { model, stepper: openStepper(model), ...chosen };
}

/**
 * A study's model: opened here, or with `remote` (--endpoint: the servers compute) only its
 * manifest read, no graph opened. `local` holds the opened model and its stepper, when opened.
 */
export async function studyModel(dir: string, profile: string | undefined, remote: boolean, threads = 2) {
  if (remote) return { local: undefined, ...(await manifestWithProfile(dir, profile)) };
  const local = await openModelWithProfile(dir, profile, threads);
  return { local, manifest: local.model.manifest, ...local };
}

/**
 * A model's manifest and the profile asked for, without opening its graphs: for a study whose
 * images servers classify (--endpoint).
 */
export async function manifestWithProfile(dir: string, profile: string | undefined) {
  const manifest = await readManifest(dir);
  const chosen = resolveProfile(manifest, profile);
  if (!chosen) process.exit(2);
  return { manifest, ...chosen };
}

function resolveProfile(manifest: Manifest, profile: string | undefined) {
  const profiles = profilesOf(manifest);
  const name = profile ?? manifest.defaultProfile;
  if (!profiles[name]) {
    console.error(
      `model ${manifest.name} has no profile '${name}': it has ${Object.keys(profiles).join(', ')}`,
    );
    return undefined;
  }
  const { hyperparameters, recommendedTimesteps, anytime } = profiles[name]!;
  const coefficients = coefficientsOfProfile(profileCoefficients(manifest), name);
  return { profile: name, hyperparameters, coefficients, recommendedTimesteps, anytime };
}
