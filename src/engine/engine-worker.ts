/**
 * The engine worker: a thread, of the server (ENGINE_ISOLATION=thread) or of the engine's child
 * process (engine-process.ts relays for it). Owns the onnxruntime sessions and the batch
 * scheduler, so that the synchronous session.run never blocks the thread that reads requests.
 * Protocol in worker-protocol.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { errors } from '../errors.js';
import type { WorkerData } from './engine-channel.js';
import { LocalEngine } from './local-engine.js';
import type { FaultKind, FromWorker, ToWorker } from './worker-protocol.js';

if (!parentPort)
  throw new Error('engine-worker.js runs as a worker thread (engine-process.js is the child process)');
const parent = parentPort;
const port = {
  data: workerData as WorkerData,
  send: (msgs: FromWorker[], then?: () => void) => {
    parent.postMessage(msgs);
    then?.();
  },
  onMessage: (listener: (msg: ToWorker) => void) => parent.on('message', listener),
  close: () => parent.close(),
};

const { settings, logLevel } = port.data;
const log = pino({ level: logLevel, base: { thread: 'engine' } });

/**
 * Messages go out together at the end of the synchronous work that made them (one batch step):
 * the flush is a microtask, so it runs before the scheduler's loop resumes for the next step.
 */
let outbox: FromWorker[] = [];
const flush = (then?: () => void) => {
  const msgs = outbox;
  outbox = [];
  if (msgs.length > 0 || then) port.send(msgs, then);
};
const post = (msg: FromWorker) => {
  if (outbox.push(msg) === 1) queueMicrotask(flush);
};
/** Sends `msg` with everything before it, then calls `then` once it is written (before an exit). */
const postLast = (msg: FromWorker, then: () => void) => {
  outbox.push(msg);
  flush(then);
};

const engine = await LocalEngine.open(settings, log).catch(
  // Nothing else to do: say why and end, once the message is on its way.
  (err: Error & { code?: string }) =>
    new Promise<never>(() =>
      postLast(
        { type: 'start-failed', code: err.code ?? errors.engineFailed.code, message: err.message },
        () => process.exit(0),
      ),
    ),
);
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
  releaseSessions();
  postLast({ type: 'fatal', message: err.message }, () => process.exit(1));
});
process.on('exit', releaseSessions);

const controllers = new Map<number, AbortController>();
port.onMessage((msg: ToWorker) => {
  if (msg.type === 'submit') {
    post({ type: 'received', id: msg.id });
    const controller = new AbortController();
    controllers.set(msg.id, controller);
    engine
      .submit({
        image: msg.image,
        timesteps: msg.timesteps,
        ...(msg.settle ? { settle: msg.settle } : {}),
        ...(msg.requestId ? { requestId: msg.requestId } : {}),
        ...(msg.profile ? { profile: msg.profile } : {}),
        signal: controller.signal,
        onStep: (step) => post({ type: 'step', id: msg.id, step }),
      })
      .then(
        ({ queueMs, inferenceMs, stop }) =>
          post({ type: 'done', id: msg.id, queueMs, inferenceMs, ...(stop ? { stop } : {}) }),
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
    void engine.close().then(port.close);
  } else if (msg.type === 'fault') {
    injectFault(msg.kind);
  }
});
post({ type: 'ready', manifest: engine.manifest, providers: [...engine.providers], batch: engine.batch });

/** The deaths an operator rehearses; the main thread only sends these when ENGINE_FAULTS=1. */
function injectFault(kind: FaultKind): void {
  log.warn({ kind }, 'injected engine fault');
  if (kind === 'throw')
    setImmediate(() => {
      throw new Error('injected fault: uncaught exception in the engine worker');
    });
  else if (kind === 'exit') process.exit(70);
  else if (kind === 'crash') process.abort();
  // A busy loop: the thread stays alive but never answers again, as a wedged native call would.
  else for (;;);
}
