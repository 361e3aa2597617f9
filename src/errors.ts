/**
 * The error catalogue: every refusal and failure the service raises on purpose, with its stable
 * code, HTTP status and message (docs/reference/http-api.md lists them all).
 */
import { STATUS_CODES } from 'node:http';

/**
 * Every error the service raises on purpose, declared once: a stable code, an HTTP status and
 * a message. Start-up errors (model, config) carry a status too, so that the same type can be
 * used from the CLI and the server.
 */
export class ServiceError extends Error {
  readonly code: string;
  readonly statusCode: number;
  /** for the server log only, never sent to the client (e.g. which requests shared a failed batch) */
  context?: Record<string, unknown>;

  constructor(code: string, statusCode: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ServiceError';
    this.code = code;
    this.statusCode = statusCode;
  }
}

type Factory<A extends unknown[]> = ((...args: A) => ServiceError) & { code: string; statusCode: number };

function define<A extends unknown[]>(
  code: string,
  statusCode: number,
  message: (...args: A) => string,
): Factory<A> {
  const factory = (...args: A) => new ServiceError(code, statusCode, message(...args));
  return Object.assign(factory, { code, statusCode });
}

export const errors = {
  configInvalid: define(
    'PREDIFY_ERR_CONFIG_INVALID',
    500,
    (detail: string) => `invalid configuration: ${detail}`,
  ),
  portInUse: define(
    'PREDIFY_ERR_PORT_IN_USE',
    500,
    (host: string, port: number, setting = 'PORT') =>
      `cannot listen on ${host}:${port}: the port is in use (set ${setting})`,
  ),
  listenFailed: define(
    'PREDIFY_ERR_LISTEN_FAILED',
    500,
    (host: string, port: number, reason: string) => `cannot listen on ${host}:${port}: ${reason}`,
  ),
  modelNotFound: define(
    'PREDIFY_ERR_MODEL_NOT_FOUND',
    500,
    (path: string) => `model file not found: ${path}`,
  ),
  modelPermissionDenied: define(
    'PREDIFY_ERR_MODEL_PERMISSION_DENIED',
    500,
    (path: string, uid: number | undefined) =>
      `permission denied reading ${path}${uid === undefined ? '' : ` (the server runs as uid ${uid})`}: ` +
      'model directories must be readable by it (chmod -R a+rX on the model directory)',
  ),
  modelNotADirectory: define(
    'PREDIFY_ERR_MODEL_NOT_A_DIRECTORY',
    500,
    (path: string) => `${path}: a part of this path is a file, not a directory (MODEL_DIR names a directory)`,
  ),
  modelUnreadable: define(
    'PREDIFY_ERR_MODEL_UNREADABLE',
    500,
    (path: string, reason: string) => `cannot read ${path}: ${reason}`,
  ),
  manifestInvalid: define(
    'PREDIFY_ERR_MANIFEST_INVALID',
    500,
    (file: string, detail: string) => `${file}: ${detail}`,
  ),
  checksumMismatch: define(
    'PREDIFY_ERR_CHECKSUM_MISMATCH',
    500,
    (file: string, expected: string, actual: string) =>
      `${file}: sha256 is ${actual}, the manifest says ${expected}`,
  ),
  graphMismatch: define(
    'PREDIFY_ERR_GRAPH_MISMATCH',
    500,
    (file: string, detail: string) => `${file}: ${detail}`,
  ),
  graphInvalid: define(
    'PREDIFY_ERR_GRAPH_INVALID',
    500,
    (file: string, detail: string) => `${file}: onnxruntime cannot load it: ${detail}`,
  ),
  noExecutionProvider: define(
    'PREDIFY_ERR_NO_EXECUTION_PROVIDER',
    500,
    (file: string, tried: string) => `${file}: no execution provider could load it (tried ${tried})`,
  ),
  gpuUnavailable: define(
    'PREDIFY_ERR_GPU_UNAVAILABLE',
    500,
    (file: string, reason: string) =>
      `${file}: GPU_REQUIRED is set and the CUDA provider cannot run it (${reason || 'cuda is not in EXECUTION_PROVIDERS'})`,
  ),
  repositoryInvalid: define(
    'PREDIFY_ERR_REPOSITORY_INVALID',
    500,
    (dir: string, detail: string) => `model repository ${dir}: ${detail}`,
  ),
  memoryBudget: define(
    'PREDIFY_ERR_MEMORY_BUDGET',
    500,
    (needMb: number, budgetMb: number, detail: string) =>
      `the models need about ${needMb} MB, over MODEL_MEMORY_BUDGET_MB (${budgetMb}): ${detail}`,
  ),
  unknownModel: define(
    'PREDIFY_ERR_UNKNOWN_MODEL',
    404,
    (name: string, known: readonly string[]) =>
      `unknown model '${name}': this server serves ${known.join(', ')}`,
  ),
  lastModel: define(
    'PREDIFY_ERR_LAST_MODEL',
    409,
    (name: string) => `model '${name}' is the last one served: load another before unloading it`,
  ),
  modelControlOff: define(
    'PREDIFY_ERR_MODEL_CONTROL_OFF',
    403,
    () => 'the repository API is off: start the server with MODEL_CONTROL=explicit (and API_KEYS)',
  ),
  noSuchModelDirectory: define(
    'PREDIFY_ERR_NO_MODEL_DIRECTORY',
    404,
    (name: string, dir: string) => `no model directory in ${dir} has a manifest named '${name}'`,
  ),
  modelLoadFailed: define(
    'PREDIFY_ERR_MODEL_LOAD_FAILED',
    400,
    (name: string, reason: string) =>
      `failed to load '${name}' (the model served before, if any, still is): ${reason}`,
  ),
  inputShape: define(
    'PREDIFY_ERR_INPUT_SHAPE',
    400,
    (detail: string) => `input does not fit the model: ${detail}`,
  ),
  unknownProfile: define(
    'PREDIFY_ERR_UNKNOWN_PROFILE',
    400,
    (name: string, known: readonly string[]) =>
      `the model has no profile '${name}': it has ${known.join(', ')}`,
  ),
  topkOutOfRange: define(
    'PREDIFY_ERR_TOPK_OUT_OF_RANGE',
    400,
    (asked: number, classes: number) =>
      `topk must be from 1 to ${classes} (the model's classes), got ${asked}`,
  ),
  timestepsOutOfRange: define(
    'PREDIFY_ERR_TIMESTEPS_OUT_OF_RANGE',
    400,
    (asked: number, max: number) => `timesteps must be a whole number from 0 to ${max}, got ${asked}`,
  ),
  settleInvalid: define(
    'PREDIFY_ERR_SETTLE_INVALID',
    400,
    (detail: string) => `invalid anytime request: ${detail}`,
  ),
  queryInvalid: define('PREDIFY_ERR_QUERY_INVALID', 400, (detail: string) => `invalid query: ${detail}`),
  multipartInvalid: define(
    'PREDIFY_ERR_MULTIPART_INVALID',
    400,
    (detail: string) => `malformed multipart body: ${detail}`,
  ),
  multipartLimit: define(
    'PREDIFY_ERR_MULTIPART_LIMIT',
    413,
    (what: string) => `multipart body has too many ${what}: send one file and at most 8 small fields`,
  ),
  noImageInForm: define(
    'PREDIFY_ERR_NO_IMAGE_IN_FORM',
    400,
    () => 'multipart body has no file part: send the image as one file field',
  ),
  unsupportedMediaType: define(
    'PREDIFY_ERR_UNSUPPORTED_MEDIA_TYPE',
    415,
    (type: string, served: readonly string[]) =>
      `unsupported media type '${type}': send one of ${served.join(', ')}`,
  ),
  imageMissing: define(
    'PREDIFY_ERR_IMAGE_MISSING',
    400,
    () => 'request has no image: send the image bytes as the body',
  ),
  imageTooLarge: define(
    'PREDIFY_ERR_IMAGE_TOO_LARGE',
    413,
    (limit: number) => `image is larger than the limit of ${limit} bytes`,
  ),
  imageUndecodable: define(
    'PREDIFY_ERR_IMAGE_UNDECODABLE',
    422,
    (detail: string) => `body is not a decodable image: ${detail}`,
  ),
  overloaded: define(
    'PREDIFY_ERR_OVERLOADED',
    503,
    (pending: number) => `server is at capacity (${pending} requests waiting or running): retry later`,
  ),
  underPressure: define(
    'PREDIFY_ERR_UNDER_PRESSURE',
    503,
    (what: string) => `server is under pressure (${what}): retry later`,
  ),
  unauthorized: define(
    'PREDIFY_ERR_UNAUTHORIZED',
    401,
    () => 'missing or invalid API key: send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"',
  ),
  requestTimeout: define(
    'PREDIFY_ERR_REQUEST_TIMEOUT',
    408,
    (ms: number) => `the request body did not arrive within ${ms} ms`,
  ),
  headersTimeout: define(
    'PREDIFY_ERR_HEADERS_TIMEOUT',
    408,
    (ms: number) => `the request headers did not arrive within ${ms} ms`,
  ),
  chunkExtensionsTooLarge: define(
    'PREDIFY_ERR_CHUNK_EXTENSIONS_TOO_LARGE',
    413,
    () => 'a chunk extension of the chunked body is longer than the server reads (16 KiB)',
  ),
  headersTooLarge: define(
    'PREDIFY_ERR_HEADERS_TOO_LARGE',
    431,
    () => 'the request headers are larger than the server accepts',
  ),
  malformedHttp: define(
    'PREDIFY_ERR_MALFORMED_HTTP',
    400,
    (detail: string) => `malformed HTTP request: ${detail}`,
  ),
  expectationFailed: define(
    'PREDIFY_ERR_EXPECTATION_FAILED',
    417,
    (value: string) => `unsupported Expect header '${value}': only 100-continue is understood`,
  ),
  answerTimeout: define(
    'PREDIFY_ERR_TIMEOUT',
    504,
    (ms: number) => `the request could not be answered within ${ms} ms and was withdrawn from the engine`,
  ),
  cancelled: define('PREDIFY_ERR_CANCELLED', 499, () => 'request was cancelled by the client'),
  engineFailed: define(
    'PREDIFY_ERR_ENGINE_FAILED',
    500,
    () => 'inference failed for the batch this request was in; the cause is in the server log',
  ),
  notReady: define('PREDIFY_ERR_NOT_READY', 503, () => 'model is still loading'),
  engineRestarting: define(
    'PREDIFY_ERR_ENGINE_RESTARTING',
    503,
    (model: string) =>
      `the engine of model ${model} stopped and is restarting: the request was not computed; retry shortly`,
  ),
} as const;

/** The JSON body of every error answer. */
export function errorBody(statusCode: number, message: string, code?: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', ...(code ? { code } : {}), message };
}

/** Why the server could not listen, as a start-up error with its own code. */
export function listenError(err: unknown, host: string, port: number, setting = 'PORT'): ServiceError {
  const code = (err as { code?: string } | null)?.code;
  if (code === 'EADDRINUSE') return errors.portInUse(host, port, setting);
  const reason =
    code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME'
      ? `HOST '${host}' does not resolve to an address (set HOST to an address or a name this machine resolves)`
      : code === 'EADDRNOTAVAIL'
        ? `HOST '${host}' is not an address of this machine`
        : code === 'EACCES'
          ? `not permitted (ports below 1024 need privileges; the image listens on 8080)`
          : `${code ?? ''} ${err instanceof Error ? err.message : String(err)}`.trim();
  return errors.listenFailed(host, port, reason);
}
