import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_MODEL = path.join(ROOT, 'models', 'fashion-pc');
export const SAMPLES = path.join(DEFAULT_MODEL, 'samples');
export const TEST_MODELS = path.join(ROOT, 'build', 'test-models');
/**
 * Predify networks as users bring them, imported from Predify TOML files with seeded random
 * weights by test/global-setup.ts at 32x32: the paper's, each from a different checkpoint
 * layout, and other torchvision CNNs (residual stages, inverted residuals, LayerNorm blocks,
 * dense concatenations) from the package's own layout.
 */
export interface PaperModel {
  name: string;
  toml: string;
  /** a torchvision classification model */
  backbone: string;
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
export const ANY_CNN_MODELS: readonly PaperModel[] = [
  {
    name: 'presnet18',
    toml: 'models/predify/presnet18.toml',
    backbone: 'resnet18',
    pcoders: 4,
    layout: 'package',
  },
  {
    name: 'pmobilenet-v3-small',
    toml: 'test/fixtures/predify/pmobilenet_v3_small.toml',
    backbone: 'mobilenet_v3_small',
    pcoders: 5,
    layout: 'package',
  },
  {
    name: 'pconvnext-tiny',
    toml: 'test/fixtures/predify/pconvnext_tiny.toml',
    backbone: 'convnext_tiny',
    pcoders: 4,
    layout: 'package',
  },
  {
    name: 'pdensenet121',
    toml: 'test/fixtures/predify/pdensenet121.toml',
    backbone: 'densenet121',
    pcoders: 5,
    layout: 'package',
  },
];
/** Figures written by tests for the docs (build/ is not committed). */
export const REPORTS = path.join(ROOT, 'build', 'reports');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
