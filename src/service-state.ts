import type { Classifier } from './engine/classifier.js';

/** What the HTTP layer needs to know of the service: the model, once it has loaded. */
export interface ServiceState {
  classifier?: Classifier;
  /** set when shutdown has begun: connections close after their current response */
  closing?: boolean;
  /** when a request was last refused because the engine queue was full (ms since epoch) */
  overloadedAt?: number;
}
