/**
 * docs/reference/configuration.md is what the schema and the meanings beside it generate
 * (npm run docs:config): a setting added, renamed, re-defaulted or re-ranged in the code
 * without regenerating the page fails here.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { format, resolveConfig } from 'prettier';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config/config.js';
import { CONFIG_DOCS } from '../src/config/docs.js';
import { configReference } from '../src/config/reference.js';
import { ROOT } from './paths.js';

const FILE = path.join(ROOT, 'docs', 'reference', 'configuration.md');

describe('the configuration reference', () => {
  it('is the page the code generates (run npm run docs:config)', async () => {
    const generated = await format(configReference(), {
      ...(await resolveConfig(FILE)),
      parser: 'markdown',
    });
    expect(await readFile(FILE, 'utf8')).toBe(generated);
  });

  it('explains every variable the service reads, and none it does not', () => {
    expect(Object.keys(CONFIG_DOCS).sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it('gives the code’s defaults and ranges', async () => {
    const page = await readFile(FILE, 'utf8');
    expect(page).toMatch(/\| `MAX_TIMESTEPS` +\| `64` +\| 0 to 1024 +\|/);
    expect(page).toMatch(/\| `MODEL_CONTROL` +\| `none` +\| `none`, `explicit` +\|/);
  });
});
