/**
 * Worker-thread entry: owns the onnxruntime sessions and the batch scheduler, so that the
 * synchronous session.run never blocks the HTTP thread. Protocol in worker-engine.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { errors } from '../errors.js';
import type { EngineSettings } from './inference-engine.js';
import { LocalEngine } from './local-engine.js';
import type { FaultKind, FromWorker, ToWorker } from './worker-protocol.js';

const port = parentPort!;
const { settings, logLevel } = workerData as { settings: EngineSettings; logLevel: string };
const log = pino({ level: logLevel, base: { thread: 'engine' } });
const post = (msg: FromWorker) => port.postMessage(msg);

let engine: LocalEngine;
try {
  engine = await LocalEngine.open(settings, log);
} catch (err) {
  const e = err as Error & { code?: string };
  post({ type: 'start-failed', code: e.code ?? errors.engineFailed.code, message: e.message });
  process.exit(0);
}
engine.onStep = (stats) => post({ type: 'stats', stats });

// onnxruntime's native memory (sessions, arena, thread pools) is not freed with a thread that
// dies: it goes with the sessions' disposal, which is synchronous. So a worker dying of an
// uncaught exception or of process.exit releases them first (measured: without this, each
// death under load kept tens of MB). A hung worker is terminated from outside and cannot.
let released = false;
const releaseSessions = () => {
  if (released) return;
  released = true;
  void engine.close();
};
process.on('uncaughtException', (err) => {
  log.error({ err }, 'engine worker: uncaught exception; releasing its sessions and exiting');
  post({ type: 'fatal', message: err.message });
  releaseSessions();
  process.exit(1);
});
process.on('exit', releaseSessions);

const controllers = new Map<number, AbortController>();
port.on('message', (msg: ToWorker) => {
  if (msg.type === 'submit') {
    const controller = new AbortController();
    controllers.set(msg.id, controller);
    engine
      .submit({
        image: msg.image,
        timesteps: msg.timesteps,
        ...(msg.requestId ? { requestId: msg.requestId } : {}),
        ...(msg.profile ? { profile: msg.profile } : {}),
        signal: controller.signal,
        onStep: (step) => post({ type: 'step', id: msg.id, step }),
      })
      .then(
        ({ queueMs, inferenceMs }) => post({ type: 'done', id: msg.id, queueMs, inferenceMs }),
        (err: Error & { code?: string; statusCode?: number; context?: Record<string, unknown> }) => {
          if (err.cause)
            log.error({ err: err.cause, reqId: msg.requestId, ...err.context }, 'engine step failed');
          post({
            type: 'failed',
            id: msg.id,
            code: err.code ?? errors.engineFailed.code,
            statusCode: err.statusCode ?? 500,
            message: err.message,
            ...(err.context ? { context: err.context } : {}),
          });
        },
      )
      .finally(() => controllers.delete(msg.id));
  } else if (msg.type === 'cancel') {
    controllers.get(msg.id)?.abort();
  } else if (msg.type === 'close') {
    released = true;
    void engine.close().then(() => port.close());
  } else if (msg.type === 'fault') {
    injectFault(msg.kind);
  }
});
post({ type: 'ready', manifest: engine.manifest, providers: [...engine.providers] });

/** The deaths an operator rehearses; the main thread only sends these when ENGINE_FAULTS=1. */
function injectFault(kind: FaultKind): void {
  log.warn({ kind }, 'injected engine fault');
  if (kind === 'throw')
    setImmediate(() => {
      throw new Error('injected fault: uncaught exception in the engine worker');
    });
  else if (kind === 'exit') process.exit(70);
  // A busy loop: the thread stays alive but never answers again, as a wedged native call would.
  else for (;;);
}
