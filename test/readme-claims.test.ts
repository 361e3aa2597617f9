/**
 * What README.md says about defaults, held to what the server does: every default in the
 * configuration table against the parsed configuration, and the claims about the shipped
 * model (its default profile, its profiles, what a request that names no timesteps gets)
 * against GET /models.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../src/config.js';
import { buildTestApp } from './helpers.js';
import { ROOT } from './paths.js';

const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');

/** The configuration table's rows: variable and the default's first `code` span. */
function configRows(): Map<string, string | undefined> {
  const start = readme.indexOf('| variable ');
  const rows = new Map<string, string | undefined>();
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const [, variable, fallback] = line.split('|').map((c) => c.trim());
    rows.set(variable!.replace(/`/g, ''), /^`([^`]*)`/.exec(fallback!)?.[1]);
  }
  return rows;
}

describe('README', () => {
  it('documents every variable, with the default the code has', () => {
    const rows = configRows();
    const config = loadConfig({}) as Record<string, unknown>;
    // NODE_ENV is Node's own; the others are in the table.
    for (const name of CONFIG_VARIABLES.filter((n) => n !== 'NODE_ENV')) {
      expect(rows.has(name), `${name} is in the table`).toBe(true);
      const documented = rows.get(name);
      if (documented === undefined) continue; // "(unset)", "(none)" and the like
      const actual = config[name];
      if (typeof actual === 'boolean') expect(['true', '1'].includes(documented), name).toBe(actual);
      else expect(Array.isArray(actual) ? actual.join(',') : String(actual), name).toBe(documented);
    }
    for (const name of rows.keys()) expect(CONFIG_VARIABLES, `${name} is read by the code`).toContain(name);
  });

  it("says what the shipped model's defaults are", async () => {
    const { app } = await buildTestApp({});
    const [model] = (await app.inject('/models')).json().models;
    await app.close();
    expect(readme).toContain(`the default profile is \`${model.defaultProfile}\``.replace('the', 'The'));
    for (const p of model.profiles) expect(readme).toContain(`\`${p.name}\``);
    // "answers by default with `timesteps=auto`"
    expect(model.timesteps.default).toBe('auto');
    expect(readme).toMatch(/answers by default with\s+`timesteps=auto`/);
    expect(readme).toMatch(/It has three profiles/);
    expect(model.profiles).toHaveLength(3);
    // The table of /classify's query: topk's default.
    expect(readme).toMatch(new RegExp(`DEFAULT_TOPK\`\\s*\\|\\s*\`${loadConfig({}).DEFAULT_TOPK}\``));
  });
});
