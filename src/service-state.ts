/**
 * What the HTTP layer knows of the service (the models once loaded, the repository control,
 * shutdown) and the one readiness that /readyz and gRPC health report.
 */
import type { ModelSet } from './engine/model-set.js';
import type { ModelControl } from './model-control.js';

/** What the HTTP layer needs to know of the service: the models, once they have all loaded. */
export interface ServiceState {
  models?: ModelSet;
  /** the repository API's loads and unloads (MODEL_CONTROL=explicit), once the models are in */
  control?: ModelControl;
  /** set when shutdown has begun: connections close after their current response */
  closing?: boolean;
  /** why the service cannot go on (an engine could not be restarted): liveness fails */
  failed?: string;
  /** when a request was last refused because the engine queue was full (ms since epoch) */
  overloadedAt?: number;
}

/**
 * Whether the server takes requests, for /readyz and the protocol's server-ready: loaded, not
 * closing, and every model ready (`strict`) or at least one (`STRICT_READINESS=false`).
 */
export function modelsReady(state: ServiceState, strict: boolean): boolean {
  if (!state.models || state.closing || state.failed) return false;
  const ready = (m: { status: string }) => m.status === 'ready';
  return strict ? state.models.all.every(ready) : state.models.all.some(ready);
}

/** A refusal for a full queue this recent makes readiness say so: the balancer should look elsewhere. */
export const OVERLOAD_WINDOW_MS = 1000;

export type Readiness =
  | { status: 'ready'; restarting: string[] }
  | { status: 'loading' | 'closing' | 'overloaded' }
  | { status: 'restarting'; restarting: string[] };

/** The one readiness of /readyz and of gRPC's health service (its server-wide status). */
export function readiness(state: ServiceState, strict: boolean): Readiness {
  if (!state.models) return { status: 'loading' };
  if (state.closing || state.failed) return { status: 'closing' };
  const restarting = state.models.all.filter((m) => m.status !== 'ready').map((m) => m.name);
  if (!modelsReady(state, strict)) return { status: 'restarting', restarting };
  if (state.overloadedAt !== undefined && Date.now() - state.overloadedAt < OVERLOAD_WINDOW_MS)
    return { status: 'overloaded' };
  return { status: 'ready', restarting };
}
