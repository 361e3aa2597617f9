/**
 * Environment variables that look like ours but are not. A misspelt name is otherwise silent:
 * `MODELDIR=/models` serves the shipped demo model, and the pod passes readiness serving the
 * wrong one.
 */

/** Kubernetes' service links (`<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_8080_TCP`, ...). */
const SERVICE_LINK = /_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$/;

/** Words that begin our names and no common variable of the platform. */
const FAMILIES = ['MODEL', 'ENGINE', 'BATCH', 'EXECUTION', 'SHUTDOWN', 'CONTINUOUS', 'ORT', 'GPU'];

const normalise = (name: string) => name.toUpperCase().replace(/[^A-Z0-9]/g, '');

function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

export interface Lookalike {
  name: string;
  /** the variable it most likely means */
  meant: string;
}

/** The variables of `env` that are not in `known` but look like one of them. */
export function lookalikes(env: Record<string, string | undefined>, known: readonly string[]): Lookalike[] {
  const ours = new Set(known);
  const found: Lookalike[] = [];
  for (const name of Object.keys(env)) {
    if (ours.has(name) || SERVICE_LINK.test(name.toUpperCase())) continue;
    const n = normalise(name);
    if (n.length < 3) continue;
    const scored = known.map((k) => ({ k, d: distance(n, normalise(k)) })).sort((a, b) => a.d - b.d);
    const best = scored[0]!;
    const close = best.d <= (n.length >= 8 ? 2 : 1);
    const family = FAMILIES.find(
      (f) => n.startsWith(f) && (f.length >= 5 || name.toUpperCase().startsWith(`${f}_`)),
    );
    if (!close && !family) continue;
    // Within a family, the nearest member of it.
    const meant = close ? best.k : scored.find((s) => normalise(s.k).startsWith(family!))!.k;
    found.push({ name, meant });
  }
  return found;
}

export const describeLookalikes = (found: readonly Lookalike[]) =>
  found.map((l) => `${l.name} is not a setting (did you mean ${l.meant}?)`).join('; ');
