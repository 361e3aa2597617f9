/**
 * One deadline per request, from the moment its headers have arrived: a body still arriving
 * when it passes is a 408, a request still queued or computing is a 504 and leaves the engine,
 * and an answer the client has not taken by then is dropped with its connection.
 * (Fastify's own handlerTimeout is cleared as soon as the body has been read, which is when
 * our work starts, so it cannot serve here.)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errorBody, errors } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** aborted when the request's deadline passes; its reason is the error that was answered */
    deadline: AbortSignal | null;
  }
}

export function installDeadline(app: FastifyInstance, ms: number): void {
  app.decorateRequest('deadline', null);
  if (ms <= 0) return;
  app.addHook('onRequest', async (request, reply) => {
    const controller = new AbortController();
    request.deadline = controller.signal;
    const timer = setTimeout(() => {
      // An answer written but still not taken by the client by now never will be.
      if (reply.sent) return void (reply.raw.writableFinished || reply.raw.destroy());
      const err = request.raw.complete ? errors.answerTimeout(ms) : errors.requestTimeout(ms);
      controller.abort(err);
      request.lifetime.abandon(err);
      request.log.warn({ code: err.code, ms }, err.message);
      // A stream that has begun cannot change its status any more: it is cut instead.
      if (reply.raw.headersSent) return void reply.raw.destroy(err);
      // The rest of a late body is not worth reading: the connection closes after the answer.
      reply
        .code(err.statusCode)
        .header('connection', 'close')
        .send(errorBody(err.statusCode, err.message, err.code));
    }, ms);
    request.lifetime.finally(() => clearTimeout(timer));
  });
}

/** True once the request's deadline has passed and it has been answered for it. */
export const pastDeadline = (request: FastifyRequest) => request.deadline?.aborted === true;
