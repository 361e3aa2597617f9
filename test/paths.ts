import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_MODEL = path.join(ROOT, 'models', 'fashion-pc');
export const SAMPLES = path.join(DEFAULT_MODEL, 'samples');
export const TEST_MODELS = path.join(ROOT, 'build', 'test-models');
/**
 * The paper's networks, imported from models/predify/*.toml with seeded random weights by
 * test/global-setup.ts, each from a different checkpoint layout.
 */
export interface PaperModel {
  name: string;
  toml: string;
  backbone: 'vgg16' | 'efficientnet_b0';
  pcoders: number;
  layout: 'package' | 'published' | 'published-timm';
}
export const PAPER_MODELS: readonly PaperModel[] = [
  { name: 'pvgg16', toml: 'models/predify/pvgg16.toml', backbone: 'vgg16', pcoders: 5, layout: 'package' },
  {
    name: 'pefficientnet-b0',
    toml: 'models/predify/pefficientnet_b0.toml',
    backbone: 'efficientnet_b0',
    pcoders: 8,
    layout: 'published-timm',
  },
];
/** Figures written by tests for the docs (build/ is not committed). */
export const REPORTS = path.join(ROOT, 'build', 'reports');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
