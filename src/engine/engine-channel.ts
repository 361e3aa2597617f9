/**
 * The line between the HTTP thread and the engine's worker, which runs either as a thread or
 * as a child process (ENGINE_ISOLATION). A thread shares the process: starting it is cheaper
 * and images move without a copy. A process owns its memory and its faults: when it dies, the
 * system takes back everything onnxruntime had allocated, and a native crash ends it alone,
 * where in a thread it ends the server.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { EngineSettings } from './inference-engine.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

export type Isolation = 'thread' | 'process';

/** What the worker is started with. */
export interface WorkerData {
  settings: EngineSettings;
  logLevel: string;
}

export interface EngineChannel {
  /** `transfer`: buffers the message owns outright, moved instead of copied where that is possible */
  send(msg: ToWorker, transfer?: ArrayBuffer[]): void;
  onMessage(listener: (msgs: FromWorker[]) => void): void;
  /** once, however it ended: `how` says with what code or signal */
  onExit(listener: (how: string) => void): void;
  offAll(): void;
  /** ends it at once, whatever it is doing */
  kill(): void;
}

/**
 * A compiled entry (engine-worker.js, the thread; engine-process.js, the child process that runs
 * that thread); tests run from src/ but workers need JavaScript, so they use dist/.
 */
function workerFile(name: 'engine-worker.js' | 'engine-process.js'): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return path.join(path.dirname(here), name);
  return path.resolve(path.dirname(here), '..', '..', 'dist', 'engine', name);
}

export function openChannel(isolation: Isolation, data: WorkerData): EngineChannel {
  return isolation === 'thread' ? threadChannel(data) : processChannel(data);
}

function threadChannel(data: WorkerData): EngineChannel {
  const worker = new Worker(workerFile('engine-worker.js'), { workerData: data });
  let exited = false;
  // An uncaught exception ends the thread: 'error', then 'exit', which reports it.
  let error: Error | undefined;
  worker.on('error', (err) => (error = err));
  return {
    send: (msg, transfer) => (exited ? undefined : worker.postMessage(msg, transfer)),
    onMessage: (listener) => worker.on('message', listener),
    onExit: (listener) =>
      worker.once('exit', (code) => {
        exited = true;
        listener(`code ${code}${error ? ` (${error.message})` : ''}`);
      }),
    offAll: () => {
      worker.removeAllListeners('message');
      worker.removeAllListeners('exit');
    },
    kill: () => void worker.terminate(),
  };
}

function processChannel(data: WorkerData): EngineChannel {
  const child: ChildProcess = fork(workerFile('engine-process.js'), [JSON.stringify(data)], {
    // v8 serialization, so that typed arrays arrive as typed arrays.
    serialization: 'advanced',
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let exited = false;
  // A failed write to a child that has just died: its exit is what is reported.
  child.on('error', () => {});
  return {
    send: (msg) => {
      if (!exited && child.connected) child.send(msg, (err) => void err);
    },
    onMessage: (listener) => child.on('message', (msgs) => listener(msgs as FromWorker[])),
    onExit: (listener) =>
      child.once('exit', (code, signal) => {
        exited = true;
        listener(signal ? `signal ${signal}` : `code ${code}`);
      }),
    offAll: () => {
      child.removeAllListeners('message');
      child.removeAllListeners('exit');
    },
    kill: () => void child.kill('SIGKILL'),
  };
}
