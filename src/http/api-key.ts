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

/** The key a client presents: `authorization: Bearer KEY`, else `x-api-key: KEY` (HTTP headers or gRPC metadata). */
export function presentedKey(authorization: unknown, apiKey: unknown): string | undefined {
  if (typeof authorization === 'string' && authorization !== '') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match?.[1];
  }
  return typeof apiKey === 'string' ? apiKey : undefined;
}

/** Whether a presented key is one of `keys`; every key passes when there are none. */
export function keyChecker(keys: readonly string[]): (key: string | undefined) => boolean {
  if (keys.length === 0) return () => true;
  const known = keys.map(digest);
  return (key) => {
    if (key === undefined) return false;
    const presented = digest(key);
    let ok = false;
    for (const ref of known) ok = timingSafeEqual(presented, ref) || ok;
    return ok;
  };
}

export function installApiKeyAuth(app: FastifyInstance, keys: readonly string[]): void {
  if (keys.length === 0) return;
  const accepted = keyChecker(keys);
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (request.routeOptions.config.public) return;
    if (!accepted(presentedKey(request.headers.authorization, request.headers['x-api-key'])))
      throw errors.unauthorized();
  });
}
