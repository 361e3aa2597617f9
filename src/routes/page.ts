/**
 * The page at GET / (public/): an image in, the per-timestep classification streaming in.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { body } from '../http/responses.js';
import '../http/route-config.js';

/** public/ at the package root, from src/routes (tests) or dist/routes (the server). */
const PUBLIC = fileURLToPath(new URL('../../public/', import.meta.url));

const FILES = {
  '/': [
    'index.html',
    'text/html',
    'The page: choose an image and watch its classification stream in, timestep by timestep',
  ],
  '/page/app.js': ['app.js', 'text/javascript', "The page's script"],
  '/page/style.css': ['style.css', 'text/css', "The page's style sheet"],
} as const;

/**
 * The page at GET /: choose an image, watch the per-timestep classification stream in. Its
 * three files are read once, at start-up; like the API documentation, they are public (the
 * page asks for an API key when the server wants one).
 */
export default async function pageRoutes(app: FastifyInstance): Promise<void> {
  for (const [url, [file, type, summary]] of Object.entries(FILES)) {
    const content = await readFile(PUBLIC + file);
    const schema = { summary, response: { 200: body(file, z.string(), type) } };
    app.get(url, { config: { public: true }, schema }, async (_request, reply) =>
      reply.type(`${type}; charset=utf-8`).header('cache-control', 'no-cache').send(content),
    );
  }
}
