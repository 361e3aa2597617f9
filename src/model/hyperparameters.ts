/**
 * The one rule for a model's hyperparameters, one set (beta, lambda, alpha) per PCoder:
 * each value is non-negative, beta and lambda at most 1, and below the top beta + lambda is at
 * most 1, so that the memory weight 1 - beta - lambda is non-negative. The top PCoder has no
 * feedback from above: its lambda is ignored (normalised to 0) and its memory is 1 - beta, as
 * in the Predify package, where a shared set gives every PCoder the same lambda, the top one
 * included. scripts/predify/hyperparameters.py holds the same rule for the exporter, and
 * test/fixtures/hyperparameter-cases.json holds the cases both sides are tested against.
 */
export interface Hyperparameters {
  beta: number;
  lambda: number;
  alpha: number;
}

export interface HyperparameterProblem {
  /** 0-based PCoder index */
  pcoder: number;
  message: string;
}

/** What is wrong with `sets`, one problem per PCoder at most; empty when they obey the rule. */
export function hyperparameterProblems(sets: readonly Hyperparameters[]): HyperparameterProblem[] {
  const problems: HyperparameterProblem[] = [];
  sets.forEach(({ beta, lambda, alpha }, i) => {
    const top = i === sets.length - 1;
    const values = { beta, lambda, alpha };
    const bad = Object.entries(values).find(([, v]) => !Number.isFinite(v) || v < 0);
    let message: string | undefined;
    if (bad) message = `${bad[0]} must be a non-negative number, got ${bad[1]}`;
    else if (beta > 1) message = `beta must not exceed 1, got ${beta}`;
    else if (lambda > 1) message = `lambda must not exceed 1, got ${lambda}`;
    else if (!top && beta + lambda > 1) message = `beta + lambda must not exceed 1, got ${beta} + ${lambda}`;
    if (message) problems.push({ pcoder: i, message });
  });
  return problems;
}

/** `sets` with the top PCoder's lambda set to 0; throws a RangeError naming each problem. */
export function normaliseHyperparameters(sets: readonly Hyperparameters[]): Hyperparameters[] {
  const problems = hyperparameterProblems(sets);
  if (problems.length > 0)
    throw new RangeError(problems.map((p) => `PCoder ${p.pcoder + 1}: ${p.message}`).join('; '));
  return sets.map((h, i) => (i === sets.length - 1 ? { ...h, lambda: 0 } : { ...h }));
}

/** Weights of the update of r_i(t); computed once per profile, not per timestep. */
export interface Coefficients {
  feedforward: number;
  feedback: number;
  memory: number;
  errorCorrection: number;
}

/**
 * The update weights for one set of hyperparameters per PCoder, with each PCoder's gradient
 * scale s_i folded into its error-correction weight.
 */
export function coefficientsOf(
  sets: readonly Hyperparameters[],
  gradientScales: readonly number[],
): Coefficients[] {
  if (sets.length !== gradientScales.length)
    throw new RangeError(`${sets.length} sets of hyperparameters for ${gradientScales.length} PCoders`);
  return normaliseHyperparameters(sets).map(({ beta, lambda, alpha }, i) => ({
    feedforward: beta,
    feedback: lambda,
    memory: 1 - beta - lambda,
    errorCorrection: alpha * gradientScales[i]!,
  }));
}
