import { parseArgs, type ParseArgsConfig } from 'node:util';

/** parseArgs that prints usage and exits 2 on a bad command line instead of throwing. */
export function parseCli<T extends ParseArgsConfig>(config: T, usage: string) {
  try {
    const parsed = parseArgs(config);
    if ((parsed.values as Record<string, unknown>)['help']) {
      console.log(usage);
      process.exit(0);
    }
    return parsed;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}

export function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) {
    console.error(`--${name} must be a whole number, got '${value}'`);
    process.exit(2);
  }
  return Number(value);
}
