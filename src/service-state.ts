import type { ModelSet } from './engine/model-set.js';

/** What the HTTP layer needs to know of the service: the models, once they have all loaded. */
export interface ServiceState {
  models?: ModelSet;
  /** set when shutdown has begun: connections close after their current response */
  closing?: boolean;
  /** why the service cannot go on (an engine could not be restarted): liveness fails */
  failed?: string;
  /** when a request was last refused because the engine queue was full (ms since epoch) */
  overloadedAt?: number;
}
