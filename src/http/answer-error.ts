/**
 * Errors as answers: the status, message and headers a failure gets on the wire, whatever the
 * route or body format.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { errors, ServiceError } from '../errors.js';
import { IMAGE_MEDIA_TYPES } from '../image/preprocess.js';
import { validationProblems } from './query.js';

/**
 * How an error is answered, whatever the body's format: its status and client-facing message,
 * the headers that go with it, and a log line for a server fault.
 */
export function answerError(
  err: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): { status: number; message: string; code?: string } {
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status >= 500) {
    const context = err instanceof ServiceError ? err.context : undefined;
    request.log.error({ err, ...context }, 'request failed');
  }
  // Our own errors are written for clients; anything else at 5xx is an internal failure
  // whose details (stack, paths) go to the log only.
  if (status >= 500 && !(err instanceof ServiceError))
    return { status, message: 'internal error while handling the request' };
  const problems = err.validationContext === 'querystring' ? validationProblems(err, false) : undefined;
  if (problems !== undefined) {
    const e = errors.queryInvalid(problems);
    return { status: e.statusCode, message: e.message, code: e.code };
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const type = request.headers['content-type'] ?? '(none)';
    const e = errors.unsupportedMediaType(type, [...IMAGE_MEDIA_TYPES, 'multipart/form-data']);
    return { status: e.statusCode, message: e.message, code: e.code };
  }
  if ([errors.overloaded.code, errors.underPressure.code, errors.engineRestarting.code].includes(err.code))
    reply.header('retry-after', '1');
  if (err.code === errors.unauthorized.code) reply.header('www-authenticate', 'Bearer realm="predify-serve"');
  return { status, message: err.message, ...(err.code ? { code: err.code } : {}) };
}
