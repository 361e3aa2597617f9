import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import '../http/route-config.js';

/** public/ at the package root, from src/routes (tests) or dist/routes (the server). */
const PUBLIC = fileURLToPath(new URL('../../public/', import.meta.url));

const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/page/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/page/style.css': ['style.css', 'text/css; charset=utf-8'],
} as const;

/**
 * The page at GET /: choose an image, watch the per-timestep classification stream in. Its
 * three files are read once, at start-up; like the API documentation, they are public (the
 * page asks for an API key when the server wants one).
 */
export default async function pageRoutes(app: FastifyInstance): Promise<void> {
  for (const [url, [file, type]] of Object.entries(FILES)) {
    const body = await readFile(PUBLIC + file);
    app.get(url, { config: { public: true } }, async (_request, reply) =>
      reply.type(type).header('cache-control', 'no-cache').send(body),
    );
  }
}
