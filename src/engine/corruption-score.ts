/**
 * How unlike clean data an input looks, from the prediction errors at t = 0: each PCoder's
 * ln e_i(0) as a z-score against clean validation images, and the largest in size. At t = 0
 * the representations are the feedforward pass alone, so the score depends on neither the
 * profile nor the timesteps of the request.
 *
 * Two-sided on purpose: noise raises the errors (the feedback cannot predict it), while blur
 * and low contrast lower them below anything clean; both are unlike the training data.
 * Measured against the softmax baseline in docs/anytime.md (npm run eval:signal).
 */

/** ln e_i(0) on clean validation images, per PCoder: what the score is measured against. */
export interface ScoreNormalisation {
  logErrorMean: readonly number[];
  logErrorStd: readonly number[];
}

/** The score of one input from its PCoders' errors at t = 0. */
export function corruptionScore(errorsAtZero: ArrayLike<number>, norm: ScoreNormalisation): number {
  return Math.max(0, ...errorZ(errorsAtZero, norm).map(Math.abs));
}

/** Each PCoder's z of ln e_i(0) against the clean images'. */
function errorZ(errorsAtZero: ArrayLike<number>, norm: ScoreNormalisation): number[] {
  return norm.logErrorMean.map((mean, i) => (logError(errorsAtZero[i]!) - mean) / norm.logErrorStd[i]!);
}

/**
 * The largest signed z of ln e_i(0) over the PCoders: how far above clean the errors rise.
 * Noise raises them and the dynamics help against it; blur and low contrast lower them, and
 * there the dynamics have nothing to explain away. The anytime gate reads this one.
 */
export function largestErrorZ(errorsAtZero: ArrayLike<number>, norm: ScoreNormalisation): number {
  return Math.max(...errorZ(errorsAtZero, norm));
}

/** The normalisation from clean images' errors at t = 0 (one array of e_i(0) per image). */
export function fitNormalisation(errorsAtZero: readonly ArrayLike<number>[]): ScoreNormalisation {
  const n = errorsAtZero.length;
  if (n < 2) throw new Error('the score needs the errors of at least 2 clean images');
  const pcoders = errorsAtZero[0]!.length;
  const logErrorMean: number[] = [];
  const logErrorStd: number[] = [];
  for (let i = 0; i < pcoders; i++) {
    const logs = errorsAtZero.map((e) => logError(e[i]!));
    const mean = logs.reduce((a, b) => a + b, 0) / n;
    const variance = logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
    logErrorMean.push(mean);
    logErrorStd.push(Math.sqrt(variance));
  }
  return { logErrorMean, logErrorStd };
}

// An error of exactly 0 (a constant input predicted perfectly) is as far from clean as can be.
const logError = (e: number) => Math.log(Math.max(e, Number.MIN_VALUE));
