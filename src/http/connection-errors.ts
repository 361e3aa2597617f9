/**
 * Errors that Node's HTTP parser answers before Fastify sees a request: malformed requests,
 * headers too large or too slow, and Expect values other than 100-continue. Node would answer
 * them with a bare status line; here they get the same JSON body as every other error.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { errorBody, errors, type ServiceError } from '../errors.js';
import { hasOpenRequest } from './request-lifetime.js';

function rawAnswer(err: ServiceError): string {
  const body = JSON.stringify(errorBody(err.statusCode, err.message, err.code));
  return (
    `HTTP/1.1 ${err.statusCode} ${errorBody(err.statusCode, '').error}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n\r\n' +
    body
  );
}

/** Fastify's `clientErrorHandler`: what a socket is told when Node cannot parse its request. */
export function clientErrorHandler(headersTimeoutMs: number) {
  return (err: Error & { code?: string; reason?: string }, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    // A request already under way has its own deadline, which answered it in JSON a second
    // before Node's limit: what remains is a connection to close.
    if (hasOpenRequest(socket)) return void socket.destroy();
    let answer: ServiceError;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') answer = errors.headersTimeout(headersTimeoutMs);
    else if (err.code === 'HPE_HEADER_OVERFLOW') answer = errors.headersTooLarge();
    else answer = errors.malformedHttp(err.reason ?? err.code ?? 'unparseable');
    socket.end(rawAnswer(answer));
  };
}

/** Answers an Expect header other than 100-continue, which Node would send as a bare 417. */
export function answerUnknownExpectations(server: Server): void {
  server.on('checkExpectation', (req, res) => {
    const err = errors.expectationFailed(String(req.headers.expect ?? '').slice(0, 100));
    const body = JSON.stringify(errorBody(err.statusCode, err.message, err.code));
    res.writeHead(err.statusCode, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
  });
}
