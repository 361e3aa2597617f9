/**
 * What becomes of the rest of a request's body when the request is answered before its body
 * is in: a 401, 404, 413, 415 or 503 decided from the headers alone.
 *
 * Closing the connection costs the requests pipelined behind it: POST is not idempotent, so
 * clients do not replay them. Reading the rest costs whatever a client chooses to send, as
 * slowly as it likes. So the rest is read and discarded, and the connection kept, within a
 * bound: DRAIN.bytes more bytes within DRAIN.ms after the answer. A body announced as longer
 * than that is not waited for: its answer says `connection: close`. A body that breaks the
 * bound later (chunked, or dribbled) has its connection cut when it does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

export const DRAIN = { bytes: 64 * 1024, ms: 1000 } as const;

/** Sockets reading the rest of a body whose request has been answered. */
const draining = new WeakSet<Socket>();

/** True while `socket` is discarding the rest of an answered request's body: a framing error
 * there belongs to a request that has had its answer, and gets no second one. */
export const isDraining = (socket: Socket) => draining.has(socket);

/** Bytes of the body not yet received, when the request says how long it is. */
function unread(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined || req.headers['transfer-encoding'] !== undefined) return undefined;
  const length = Number(header);
  // What is buffered in the request stream has arrived; nothing of it was read by a route that
  // answered early.
  return Number.isSafeInteger(length) ? Math.max(0, length - req.readableLength) : undefined;
}

/** Cuts the connection if the rest of `req`'s body does not arrive within DRAIN. */
function bound(req: IncomingMessage, res: ServerResponse): void {
  res.once('finish', () => {
    const socket = req.socket;
    // Injected requests (tests, light-my-request) have no real socket to bound.
    if (req.complete || !(socket instanceof Socket) || socket.destroyed) return;
    const start = socket.bytesRead;
    draining.add(socket);
    const stop = () => {
      draining.delete(socket);
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', stop);
      req.off('end', stop);
    };
    const cut = () => {
      stop();
      if (!req.complete) socket.destroy();
    };
    const onData = () => {
      if (req.complete) stop();
      else if (socket.bytesRead - start > DRAIN.bytes) cut();
    };
    const timer = setTimeout(cut, DRAIN.ms);
    socket.on('data', onData);
    socket.once('close', stop);
    // Node reads and discards the rest of an unread body once the answer is finished.
    req.once('end', stop);
  });
}

export function installEarlyAnswers(app: FastifyInstance, closing: () => boolean): void {
  app.addHook('onSend', async (request, reply) => {
    // While draining, keep-alive connections must not hold the server open after their
    // in-flight request has been answered.
    if (closing()) return void reply.header('connection', 'close');
    const req = request.raw;
    if (req.complete) return;
    const left = unread(req);
    if (left !== undefined && left > DRAIN.bytes) return void reply.header('connection', 'close');
    bound(req, reply.raw);
  });
}
