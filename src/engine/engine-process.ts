/**
 * The engine's child process (ENGINE_ISOLATION=process). The engine itself runs on a thread
 * inside it (engine-worker.ts); this main thread only relays messages between the server and
 * that thread. onnxruntime's session.run computes on the thread that calls it: were that this
 * one, the IPC socket would be read only between model calls, and a 224 px image (600 kB of
 * float32, about 150 kB read per turn) would take several calls to arrive, starving the batch.
 * The relay reads the socket whenever data comes, so the engine's next batch holds every
 * request that arrived during its current call.
 */
import { Worker } from 'node:worker_threads';
import type { WorkerData } from './engine-channel.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

const data = JSON.parse(process.argv[2]!) as WorkerData;
const engine = new Worker(new URL('./engine-worker.js', import.meta.url), { workerData: data });

// The engine's last messages (a fatal error, a start failure) must be written before this
// process exits with the thread's code.
let writing = 0;
let exitCode: number | undefined;
const finish = () => {
  if (exitCode !== undefined && writing === 0) process.exit(exitCode);
};
engine.on('message', (msgs: FromWorker[]) => {
  if (!process.connected) return;
  writing++;
  process.send!(msgs, undefined, {}, () => {
    writing--;
    finish();
  });
});
// An uncaught exception in the thread: its handler has already said so ('fatal'); the exit follows.
engine.on('error', () => {});
engine.on('exit', (code) => {
  exitCode = code;
  finish();
});

// Copied to the thread, not transferred: a deserialized image may be a view of the channel's
// read buffer, shared with the messages after it.
process.on('message', (msg: ToWorker) => engine.postMessage(msg));
// A child whose server is gone has no one to work for: this is also how it dies with a server
// that was SIGKILLed (the IPC channel closes with it).
process.on('disconnect', () => process.exit(0));
// A stop sent to the whole process group (Ctrl-C, systemd's KillMode=control-group, tini -g,
// kill -- -PGID) reaches this child too, at the same moment as the server. The server drains
// its requests with this engine and then closes it, so the child leaves the stopping to it.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => {});
