/**
 * What the front page and the manual say about the shipped model's defaults, held to what the
 * server does (GET /models): its default profile, its profiles, what a request that names no
 * timesteps gets, and the default topk in the HTTP reference's query table. (The configuration
 * reference is generated from the code: test/config-reference.test.ts.)
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { buildTestApp } from './helpers.js';
import { ROOT } from './paths.js';

const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');

describe('the manual', () => {
  it("says what the shipped model's defaults are", async () => {
    const { app } = await buildTestApp({});
    const [model] = (await app.inject('/models')).json().models;
    await app.close();
    const readme = await read('README.md');
    const models = await read('docs/reference/model-format.md');
    const api = await read('docs/reference/http-api.md');
    expect(models).toContain(`the default profile is \`${model.defaultProfile}\``.replace('the', 'The'));
    for (const p of model.profiles) expect(models).toContain(`\`${p.name}\``);
    // "answers by default with `timesteps=auto`"
    expect(model.timesteps.default).toBe('auto');
    expect(readme).toMatch(/answers by default with\s+`timesteps=auto`/);
    expect(models).toMatch(/It has three profiles/);
    expect(model.profiles).toHaveLength(3);
    // The table of /classify's query: topk's default.
    expect(api).toMatch(new RegExp(`DEFAULT_TOPK\`\\s*\\(${loadConfig({}).DEFAULT_TOPK}\\)`));
  });

  it('keeps the front page a front page', async () => {
    expect((await read('README.md')).split('\n').length).toBeLessThanOrEqual(250);
  });
});
