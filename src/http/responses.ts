/**
 * Building blocks of the routes' response schemas: a status's description with the schema of
 * its body, keyed by content type as Fastify and the OpenAPI document both read it.
 */
import type { z } from 'zod';
import { errors } from '../errors.js';
import { errorBodySchema } from './schemas.js';

export const body = (description: string, schema: z.ZodType, type = 'application/json') => ({
  description,
  content: { [type]: { schema } },
});

/** Our error body for each status a route answers with, and why. */
export const errorResponses = (statuses: Record<number, string>, schema: z.ZodType = errorBodySchema) =>
  Object.fromEntries(
    Object.entries(statuses).map(([status, description]) => [status, body(description, schema)]),
  );

/** The stable codes behind a status, for its description. */
export const code = (...factories: { code: string }[]) => factories.map((f) => f.code).join(', ');

/** What any route behind the API key and the load shedding can answer. */
export const COMMON_ERRORS = {
  401: `missing or wrong API key, when API_KEYS is set (${code(errors.unauthorized)})`,
  503: `the event loop is overloaded; Retry-After says when to try again (${code(errors.underPressure)})`,
};
