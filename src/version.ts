/**
 * The package's version, as the server and the CLI report it.
 */
import { readFileSync } from 'node:fs';

/** The package's version, from package.json at the package root (src/ or dist/ is one below). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
