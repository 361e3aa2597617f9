/**
 * Errors as gRPC statuses. Our errors carry an HTTP status; each maps to the gRPC code with the
 * same meaning for a client (what it should fix, whether to retry), as grpc-gateway and
 * Triton map them:
 *   400, 415, 422  INVALID_ARGUMENT     the request is wrong: the message names what
 *   401            UNAUTHENTICATED      no key, or not one of API_KEYS
 *   404            NOT_FOUND            no such model or version
 *   408, 504       DEADLINE_EXCEEDED    REQUEST_TIMEOUT_MS or the call's deadline passed
 *   413            RESOURCE_EXHAUSTED   more than the server takes in one request
 *   499            CANCELLED            the client went
 *   503            UNAVAILABLE          loading, restarting, closing or the event loop lags;
 *                  RESOURCE_EXHAUSTED   the engine's queue is full (load shedding)
 *                  both: retry after a while, as with HTTP's 503 and Retry-After
 *   500 and else   INTERNAL             the engine failed; details only in the server's log
 * The error's code (PREDIFY_ERR_...) travels in the trailing metadata as `predify-error-code`.
 */
import { Metadata, status as Status, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { errors, ServiceError } from '../errors.js';
import { ProtocolError } from '../protocol/open-inference.js';

const BY_HTTP_STATUS: Record<number, Status> = {
  400: Status.INVALID_ARGUMENT,
  401: Status.UNAUTHENTICATED,
  403: Status.PERMISSION_DENIED,
  404: Status.NOT_FOUND,
  408: Status.DEADLINE_EXCEEDED,
  413: Status.RESOURCE_EXHAUSTED,
  415: Status.INVALID_ARGUMENT,
  422: Status.INVALID_ARGUMENT,
  499: Status.CANCELLED,
  503: Status.UNAVAILABLE,
  504: Status.DEADLINE_EXCEEDED,
};

export function grpcStatusOf(status: number, code?: string): Status {
  if (code === errors.overloaded.code) return Status.RESOURCE_EXHAUSTED;
  return BY_HTTP_STATUS[status] ?? (status >= 500 ? Status.INTERNAL : Status.INVALID_ARGUMENT);
}

/** The status a handler answers for `err`, and whether it is the server's fault (to be logged). */
export function toGrpcError(err: unknown): { error: Partial<GrpcError>; serverFault: boolean } {
  const metadata = new Metadata();
  if (err instanceof ProtocolError)
    return { error: { code: grpcStatusOf(err.status), details: err.message, metadata }, serverFault: false };
  if (err instanceof ServiceError) {
    metadata.set('predify-error-code', err.code);
    if (err.statusCode === 503) metadata.set('retry-after', '1');
    return {
      error: { code: grpcStatusOf(err.statusCode, err.code), details: err.message, metadata },
      serverFault: err.statusCode >= 500 && err.statusCode !== 503 && err.statusCode !== 504,
    };
  }
  // Anything else is an internal failure whose details (stack, paths) go to the log only.
  return {
    error: { code: Status.INTERNAL, details: 'internal error while handling the request', metadata },
    serverFault: true,
  };
}
