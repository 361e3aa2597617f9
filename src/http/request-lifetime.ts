/**
 * When a request has ended, however it ended, and whether its work is still wanted.
 *
 * Node says that a client has gone in different ways depending on where its request was:
 * - the response being written gets 'close';
 * - a pipelined response still queued behind it gets no event at all;
 * - a request's own 'close' fires as soon as its body has been read, client gone or not.
 * The one event every case shares is the socket's 'close'. So each request registers with its
 * socket, and whichever comes first, its response's 'close' or its socket's, ends it. Whatever
 * a request holds (an admission slot, a timer) is released exactly once, and work for a
 * request that was not answered is abandoned through one signal, from the moment its
 * headers arrived: while its body is read, while it is decoded, queued or computed.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    lifetime: RequestLifetime;
  }
}

export class RequestLifetime {
  readonly #controller = new AbortController();
  readonly #cleanups: (() => void)[] = [];
  #ended = false;
  readonly #answered: () => boolean;
  readonly #started: () => boolean;
  /** the request's own message, to tell whether its body is still arriving */
  readonly message: IncomingMessage | undefined;

  constructor(answered: () => boolean, started: () => boolean = answered, message?: IncomingMessage) {
    this.#answered = answered;
    this.#started = started;
    this.message = message;
  }

  /** Whether any byte of its answer has been written: then nothing else may be. */
  get answerStarted(): boolean {
    return this.#started();
  }

  /**
   * Aborted when the work is no longer wanted: the client left before its answer (reason:
   * errors.cancelled), or the request was answered early, e.g. for its deadline (reason: that
   * error). Pass it to everything the request starts.
   */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Runs `release` once when the request ends; at once if it has ended already. */
  finally(release: () => void): void {
    if (this.#ended) release();
    else this.#cleanups.push(release);
  }

  /** Withdraws the request's work: it has been, or will be, answered without it. */
  abandon(reason: Error): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Called by the transport: the response was sent, or the connection went away. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#answered()) this.abandon(errors.cancelled());
    for (const release of this.#cleanups.splice(0)) release();
  }
}

/** Requests not yet ended, by the socket they came on. */
const pending = new WeakMap<Socket, Set<RequestLifetime>>();

function watchSocket(socket: Socket, lifetime: RequestLifetime): void {
  let open = pending.get(socket);
  if (!open) {
    const set = new Set<RequestLifetime>();
    open = set;
    pending.set(socket, set);
    socket.once('close', () => {
      for (const l of set) l.end();
      set.clear();
    });
  }
  open.add(lifetime);
  lifetime.finally(() => open.delete(lifetime));
}

/** The requests that arrived on `socket` and have not ended, in the order they came. */
export const openRequests = (socket: Socket): RequestLifetime[] => [...(pending.get(socket) ?? [])];

/** Gives every request its lifetime. Register before any hook that takes something. */
export function installRequestLifetime(app: FastifyInstance): void {
  app.decorateRequest('lifetime', null as unknown as RequestLifetime);
  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    const res = reply.raw;
    const lifetime = new RequestLifetime(
      () => res.writableFinished,
      () => res.headersSent,
      request.raw,
    );
    request.lifetime = lifetime;
    res.once('close', () => lifetime.end());
    const socket = request.raw.socket as Socket | null;
    if (!socket || socket.destroyed) return lifetime.end();
    watchSocket(socket, lifetime);
  });
}
