import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino } from 'pino';
import { coefficientsOfProfile, profileCoefficients } from '../engine/profiles.js';
import { PredictiveStepper } from '../engine/predictive-step.js';
import { loadModel } from '../model/load-model.js';
import { profilesOf } from '../model/manifest.js';

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
  const profiles = profilesOf(model.manifest);
  const name = profile ?? model.manifest.defaultProfile;
  if (!profiles[name]) {
    console.error(
      `model ${model.manifest.name} has no profile '${name}': it has ${Object.keys(profiles).join(', ')}`,
    );
    await model.release();
    process.exit(2);
  }
  const stepper = new PredictiveStepper(model);
  const { hyperparameters, recommendedTimesteps, anytime } = profiles[name]!;
  const coefficients = coefficientsOfProfile(profileCoefficients(model.manifest), name);
  return { model, stepper, profile: name, hyperparameters, coefficients, recommendedTimesteps, anytime };
}
