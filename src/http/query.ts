import { z } from 'zod';
import { errors } from '../errors.js';

/** A query parameter that must appear at most once and be a whole number in [min, max]. */
export function integerParam(name: string, min: number, max: number) {
  return z
    .string({
      error: (issue) =>
        Array.isArray(issue.input) ? `${name} must be given once` : `${name} must be a string`,
    })
    .regex(/^\d+$/, `${name} must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `${name} must be at least ${min}`).max(max, `${name} must be at most ${max}`),
    );
}

/** A query parameter that must appear at most once and be one of `choices`. */
export function choiceParam(name: string, choices: readonly string[]) {
  return z
    .string({
      error: (issue) =>
        Array.isArray(issue.input) ? `${name} must be given once` : `${name} must be a string`,
    })
    .refine((v) => choices.includes(v), `${name} must be one of ${choices.join(', ')}`);
}

/** Parses with `schema` or throws a 400 that names each bad parameter. */
export function parseQuery<T extends z.ZodType>(schema: T, query: unknown): z.infer<T> {
  const parsed = schema.safeParse(query ?? {});
  if (!parsed.success) {
    throw errors.queryInvalid(
      parsed.error.issues
        .map((i) =>
          i.code === 'unrecognized_keys'
            ? `unknown parameter(s) ${i.keys.map((k) => `'${k}'`).join(', ')}`
            : i.message,
        )
        .join('; '),
    );
  }
  return parsed.data;
}
