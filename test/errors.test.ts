import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { errors } from '../src/errors.js';
import { ROOT } from './paths.js';

describe('errors', () => {
  it('has a unique code for each error, each documented in the HTTP reference', async () => {
    const readme = await readFile(path.join(ROOT, 'docs', 'reference', 'http-api.md'), 'utf8');
    const codes = Object.values(errors).map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(readme, code).toContain(code);
  });
});
