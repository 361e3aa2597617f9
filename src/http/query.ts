/**
 * Query parameters and the messages a client gets when its query or body does not validate.
 * A route's zod schemas are its validators (fastify-type-provider-zod); the messages here name
 * the parameter and what it must be, and a repeated parameter is refused, not silently
 * turned into an array.
 */
import { z } from 'zod';
import type { FastifyError } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

/** A query parameter that must appear at most once and be a whole number in [min, max]. */
export function integerParam(name: string, min: number, max = Infinity) {
  const range = Number.isFinite(max) ? `between ${min} and ${max}` : `of at least ${min}`;
  // A preprocess rather than a string pipe, so that the document says "integer" with its bounds.
  return z.preprocess(
    (value, ctx) => {
      const problem = once(name, value) ?? (/^\d+$/.test(value as string) ? undefined : 'whole');
      if (problem === undefined) return Number(value);
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: problem === 'whole' ? `${name} must be a whole number ${range}` : problem,
      });
      return z.NEVER;
    },
    z.number().int().min(min, `${name} must be at least ${min}`).max(max, `${name} must be at most ${max}`),
  );
}

/** `timesteps`: a whole number in [0, max], or `auto` (run until the dynamics settle). */
export function timestepsParam(max: number) {
  const count = z
    .number()
    .int()
    .min(0, 'timesteps must be at least 0')
    .max(max, `timesteps must be at most ${max}`);
  return z.preprocess(
    (value, ctx) => {
      if (value === 'auto') return value;
      const problem = once('timesteps', value) ?? (/^\d+$/.test(value as string) ? undefined : 'whole');
      if (problem === undefined) return Number(value);
      ctx.issues.push({
        code: 'custom',
        input: value,
        message:
          problem === 'whole' ? `timesteps must be a whole number between 0 and ${max}, or auto` : problem,
      });
      return z.NEVER;
    },
    z.union([z.literal('auto'), count]),
  );
}

/** A query parameter that must appear at most once and be a decimal number in (above, max]. */
export function decimalParam(name: string, above: number, max: number) {
  return z.preprocess(
    (value, ctx) => {
      const problem =
        once(name, value) ?? (/^(\d+\.?\d*|\.\d+)(e-?\d+)?$/i.test(value as string) ? undefined : 'number');
      if (problem === undefined) return Number(value);
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: problem === 'number' ? `${name} must be a number` : problem,
      });
      return z.NEVER;
    },
    z.number().gt(above, `${name} must be above ${above}`).max(max, `${name} must be at most ${max}`),
  );
}

/** A query parameter that must appear at most once. */
export function stringParam(name: string) {
  return z.string({ error: (issue) => once(name, issue.input) ?? `${name} must be a string` });
}

const once = (name: string, value: unknown) =>
  Array.isArray(value) ? `${name} must be given once` : undefined;

/** The failed checks of a request that did not validate, each named; undefined for other errors. */
export function validationProblems(err: FastifyError, withPath: boolean): string | undefined {
  if (!hasZodFastifySchemaValidationErrors(err)) return undefined;
  return err.validation
    .map((issue) => {
      const keys = (issue.params as { keys?: string[] }).keys;
      if (issue.keyword === 'unrecognized_keys' && keys && err.validationContext === 'querystring')
        return `unknown parameter(s) ${keys.map((k) => `'${k}'`).join(', ')}`;
      const where = issue.instancePath.slice(1).replaceAll('/', '.');
      return withPath && where ? `${where}: ${issue.message}` : issue.message;
    })
    .join('; ');
}
