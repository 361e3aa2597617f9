/**
 * The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) and gRPC's standard
 * health service, on GRPC_PORT beside the HTTP server: the same models and engines, the same
 * request checks (src/protocol/), the same limits. A call's deadline and its cancellation reach
 * the engine as a disconnected HTTP client's do: its images leave the batch at the next step.
 */
import {
  Server,
  ServerCredentials,
  setLogger,
  status as Status,
  type Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config/config.js';
import { errors } from '../errors.js';
import { keyChecker, presentedKey } from '../http/api-key.js';
import type { Metrics } from '../metrics.js';
import { infer } from '../protocol/infer.js';
import { extensionsFor, modelMetadata, servedModel } from '../protocol/open-inference.js';
import { TUNING } from '../engine/batch-tuning.js';
import { modelsReady, readiness, type ServiceState } from '../service-state.js';
import { VERSION } from '../version.js';
import { fromInferRequest, toInferResponse, type ModelInferRequest } from './messages.js';
import { healthService, inferenceService } from './protos.js';
import { toGrpcError } from './status.js';

export interface GrpcOptions {
  config: Config;
  state: ServiceState;
  logger: FastifyBaseLogger;
  metrics?: Metrics;
  /** whether the process is too loaded to take work (HTTP's under-pressure check) */
  underPressure?: () => boolean;
}

export interface GrpcServer {
  port: number;
  close(graceMs: number): Promise<void>;
}

/** How often Health.Watch looks for a change of status. */
const WATCH_INTERVAL_MS = 1000;

export async function startGrpc(
  { config, state, logger, metrics, underPressure }: GrpcOptions,
  // An IPv6 host is written in brackets before its port.
  address = `${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${config.GRPC_PORT}`,
): Promise<GrpcServer> {
  // grpc-js writes its own errors to stderr as plain text; the server's log is JSON lines, and
  // what matters of them (a port in use) is reported by the caller with its code.
  setLogger({
    error: (...args: unknown[]) => logger.debug({ grpc: args.map(String).join(' ') }, 'grpc-js'),
    info: (...args: unknown[]) => logger.debug({ grpc: args.map(String).join(' ') }, 'grpc-js'),
    debug: (...args: unknown[]) => logger.trace({ grpc: args.map(String).join(' ') }, 'grpc-js'),
  });
  const server = new Server({
    // The same bound as an HTTP body: a bigger message is RESOURCE_EXHAUSTED before it is read.
    'grpc.max_receive_message_length': config.BODY_LIMIT_BYTES,
    'grpc.max_send_message_length': -1,
  });
  const accepted = keyChecker(config.API_KEYS);
  const maxBatch = config.BATCH_MAX_SIZE === 'auto' ? TUNING.maxSize : config.BATCH_MAX_SIZE;

  const model = (name: string, version: string) => servedModel(state.models, name, version);

  /**
   * One unary method: the key checked (probes are public), the work given a signal that
   * aborts at the call's deadline (or REQUEST_TIMEOUT_MS, the sooner) and when the client
   * cancels, and every error answered with its status.
   */
  function unary<Req, Res>(
    method: string,
    open: 'public' | 'keyed',
    work: (request: Req, signal: AbortSignal) => Promise<Res> | Res,
  ) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const started = performance.now();
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const deadline = Number(call.getDeadline());
      const left = Math.min(
        config.REQUEST_TIMEOUT_MS > 0 ? config.REQUEST_TIMEOUT_MS : Infinity,
        Number.isFinite(deadline) ? Math.max(0, deadline - Date.now()) : Infinity,
      );
      if (Number.isFinite(left))
        timer = setTimeout(() => controller.abort(errors.answerTimeout(Math.round(left))), left);
      call.on('cancelled', () => controller.abort(errors.cancelled()));

      const answer = (code: Status, error: Parameters<sendUnaryData<Res>>[0], value?: Res) => {
        clearTimeout(timer);
        metrics?.grpcRequests.inc({ method, code: Status[code] });
        metrics?.grpcDuration.observe({ method }, (performance.now() - started) / 1000);
        if (error) callback(error);
        else callback(null, value);
      };
      const fail = (err: unknown) => {
        // A deadline or cancellation that aborted the work is what the client gets told.
        const reason: unknown = controller.signal.aborted ? controller.signal.reason : err;
        // Load shed here counts for readiness as it does over HTTP (/readyz, gRPC health).
        if ((reason as { code?: string } | null)?.code === errors.overloaded.code)
          state.overloadedAt = Date.now();
        const { error, serverFault } = toGrpcError(reason);
        if (serverFault) logger.error({ err, method }, 'gRPC call failed');
        answer(error.code ?? Status.INTERNAL, error);
      };
      try {
        if (open === 'keyed' && !accepted(keyOf(call.metadata))) throw errors.unauthorized();
        if (open === 'keyed' && underPressure?.()) throw errors.underPressure('event loop delay');
        Promise.resolve(work(call.request, controller.signal)).then(
          (value) =>
            controller.signal.aborted ? fail(controller.signal.reason) : answer(Status.OK, null, value),
          fail,
        );
      } catch (err) {
        fail(err);
      }
    };
  }

  server.addService(inferenceService(), {
    ServerLive: unary('ServerLive', 'public', () => ({ live: !state.failed })),
    ServerReady: unary('ServerReady', 'public', () => ({
      ready: modelsReady(state, config.STRICT_READINESS),
    })),
    ModelReady: unary('ModelReady', 'keyed', (r: { name: string; version: string }) => ({
      ready: !state.closing && model(r.name, r.version).status === 'ready',
    })),
    ServerMetadata: unary('ServerMetadata', 'keyed', () => ({
      name: 'predify-serve',
      version: VERSION,
      extensions: extensionsFor(config.MODEL_CONTROL),
    })),
    ModelMetadata: unary('ModelMetadata', 'keyed', (r: { name: string; version: string }) => {
      const classifier = model(r.name, r.version);
      const { parameters, ...metadata } = modelMetadata(classifier.manifest, {
        profiles: Object.keys(classifier.profiles),
        defaultTimesteps: classifier.defaultTimesteps(classifier.manifest.defaultProfile),
        maxTimesteps: config.MAX_TIMESTEPS,
      });
      const properties = Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, String(v)]));
      return { ...metadata, properties };
    }),
    ModelInfer: unary('ModelInfer', 'keyed', async (message: ModelInferRequest, signal) => {
      const classifier = model(message.model_name, message.model_version);
      const { request, data } = fromInferRequest(message, { maxTimesteps: config.MAX_TIMESTEPS });
      return toInferResponse(await infer({ classifier, request, data, maxBatch, signal }));
    }),
  });

  // grpc.health.v1: "" (and the inference service's name) is the server's readiness, as /readyz
  // decides it; "liveness" is /healthz's; a model's name is that model's. Kubernetes' grpc
  // probes ask for "" unless told otherwise.
  const health = (service: string): 'SERVING' | 'NOT_SERVING' | undefined => {
    if (service === '' || service === 'inference.GRPCInferenceService')
      return readiness(state, config.STRICT_READINESS).status === 'ready' ? 'SERVING' : 'NOT_SERVING';
    if (service === 'liveness') return state.failed ? 'NOT_SERVING' : 'SERVING';
    if (!state.models) return 'NOT_SERVING';
    if (!state.models.names.includes(service)) return undefined;
    return !state.closing && state.models.get(service).status === 'ready' ? 'SERVING' : 'NOT_SERVING';
  };
  server.addService(healthService(), {
    Check: (call: ServerUnaryCall<{ service: string }, object>, callback: sendUnaryData<object>) => {
      const status = health(call.request.service);
      if (status === undefined)
        return callback({ code: Status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
      callback(null, { status });
    },
    Watch: (call: ServerWritableStream<{ service: string }, object>) => {
      let last: string | undefined;
      const send = () => {
        const status = health(call.request.service) ?? 'SERVICE_UNKNOWN';
        if (status !== last) call.write({ status });
        last = status;
      };
      send();
      const timer = setInterval(send, WATCH_INTERVAL_MS);
      call.on('cancelled', () => clearInterval(timer));
      call.on('close', () => clearInterval(timer));
    },
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        // Calls in flight get the grace period to finish; then whatever is left is cut.
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

function keyOf(metadata: Metadata): string | undefined {
  const first = (key: string) => {
    const v = metadata.get(key)[0];
    return typeof v === 'string' ? v : undefined;
  };
  return presentedKey(first('authorization'), first('x-api-key'));
}
