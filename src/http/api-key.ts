/**
 * Optional API-key authentication. Keys are compared as SHA-256 digests with
 * timingSafeEqual, against every configured key without stopping at a match, so that the
 * time taken says nothing about how much of a key was right or which key matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';
import './route-config.js';

const digest = (key: string) => createHash('sha256').update(key).digest();

function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (auth) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return match?.[1];
  }
  const header = request.headers['x-api-key'];
  return typeof header === 'string' ? header : undefined;
}

export function installApiKeyAuth(app: FastifyInstance, keys: readonly string[]): void {
  if (keys.length === 0) return;
  const known = keys.map(digest);
  const accepted = (key: string) => {
    const presented = digest(key);
    let ok = false;
    for (const ref of known) ok = timingSafeEqual(presented, ref) || ok;
    return ok;
  };
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public) return;
    const key = presentedKey(request);
    if (key === undefined || !accepted(key)) throw errors.unauthorized();
  });
}
