import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_MODEL = path.join(ROOT, 'models', 'fashion-pc');
export const SAMPLES = path.join(DEFAULT_MODEL, 'samples');
/** Paper-architecture models with random weights, exported by test/global-setup.ts. */
export const TEST_MODELS = path.join(ROOT, 'build', 'test-models');
export const PAPER_MODELS = [
  { name: 'pvgg16', config: 'scripts/configs/pvgg16.json', pcoders: 5, golden: 2 },
  { name: 'pefficientnet-b0', config: 'scripts/configs/pefficientnet_b0.json', pcoders: 8, golden: 3 },
] as const;
/** Figures written by tests for the docs (build/ is not committed). */
export const REPORTS = path.join(ROOT, 'build', 'reports');
