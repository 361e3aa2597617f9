/**
 * Errors that Node's HTTP parser answers before Fastify sees a request: malformed requests,
 * headers too large or too slow, and Expect values other than 100-continue. Node would answer
 * them with a bare status line; here they get the same JSON body as every other error.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { errorBody, errors, type ServiceError } from '../errors.js';
import { isDraining } from './early-answers.js';
import { openRequests } from './request-lifetime.js';

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

/** The error Node's parser reported, as the JSON answer it deserves. */
function answerFor(err: Error & { code?: string; reason?: string }, headersTimeoutMs: number): ServiceError {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return errors.headersTimeout(headersTimeoutMs);
    case 'HPE_HEADER_OVERFLOW':
      return errors.headersTooLarge();
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return errors.chunkExtensionsTooLarge();
    default:
      return errors.malformedHttp(err.reason ?? err.code ?? 'unparseable');
  }
}

/**
 * Fastify's `clientErrorHandler`: what a socket is told when Node cannot parse its request,
 * in its headers or in its body's framing (a bad chunk size, an overlong chunk extension).
 * The answer goes after the answers of the requests pipelined before the broken one, then the
 * connection closes: nothing after the broken framing can be read.
 */
export function clientErrorHandler(headersTimeoutMs: number) {
  return (err: Error & { code?: string; reason?: string }, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || !socket.writable || isDraining(socket)) return void socket.destroy();
    const open = openRequests(socket);
    // The broken request is the one whose body was being read; those before it await answers.
    const broken = open.find((r) => r.message && !r.message.complete);
    // A request already under way has its own deadline, which answered it in JSON a second
    // before Node's limit: what remains is a connection to close. So is one whose answer has
    // begun: a second answer cannot be written into it.
    if (broken?.answerStarted || (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && open.length > 0))
      return void socket.destroy();
    const answer = rawAnswer(answerFor(err, headersTimeoutMs));
    const before = open.filter((r) => r !== broken);
    const write = () => (socket.writable ? socket.end(answer) : socket.destroy());
    if (before.length === 0) return void write();
    let waiting = before.length;
    for (const r of before)
      r.finally(() => {
        if (--waiting === 0) write();
      });
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
