/**
 * Predify networks as a user brings them: PVGG16 and PEfficientNetB0 from the Predify TOML
 * files in models/predify/, with seeded random weights saved in the layouts users have
 * (PVGG16: the package's own state dict; PEfficientNetB0: the published per-PCoder files with
 * a timm backbone), and ResNet-18, MobileNetV3-Small, ConvNeXt-Tiny and DenseNet-121 from the
 * package's state dict, imported by scripts/import_predify.py at 32x32. Done once: the result is
 * cached under build/test-models and redone only when the toolchain or the TOML files change.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ANY_CNN_MODELS, PAPER_MODELS, ROOT, TEST_MODELS, type PaperModel } from './paths.js';

const PYTHON = '/usr/bin/python3';

function toolchainHash(model: PaperModel): string {
  const hash = createHash('sha256');
  const dir = path.join(ROOT, 'scripts', 'predify');
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.py'))
    .sort()) {
    hash.update(readFileSync(path.join(dir, file)));
  }
  for (const file of ['scripts/import_predify.py', 'scripts/tests/predify_fixtures.py', model.toml])
    hash.update(readFileSync(path.join(ROOT, file)));
  hash.update(JSON.stringify(model));
  return hash.digest('hex');
}

function python(args: string[]): void {
  execFileSync(PYTHON, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
}

function importModel(model: PaperModel, out: string): void {
  const fixture = path.join(TEST_MODELS, '.fixtures', model.name);
  rmSync(fixture, { recursive: true, force: true });
  const common = ['--config', model.toml, '--backbone', model.backbone, '--input-size', '32'];
  const published = model.layout !== 'package';
  python([
    'scripts/tests/predify_fixtures.py',
    ...common,
    '--layout',
    published ? 'published' : 'package',
    ...(model.layout === 'published-timm' ? ['--timm'] : []),
    '--out',
    fixture,
  ]);
  const weights = published
    ? [
        '--predictor-weights',
        ...Array.from({ length: model.pcoders }, (_, i) => path.join(fixture, `pc${i + 1}.pth`)),
        '--backbone-weights',
        path.join(fixture, 'backbone.pth'),
      ]
    : ['--weights', path.join(fixture, 'pnet.pth')];
  python(['scripts/import_predify.py', ...common, ...weights, '--name', model.name, '--out', out]);
  // The checkpoints are as large as the graphs (PVGG16: ~830 MB); the model directory is what
  // the tests read.
  rmSync(fixture, { recursive: true, force: true });
}

export default function setup(): void {
  for (const model of [...PAPER_MODELS, ...ANY_CNN_MODELS]) {
    const out = path.join(TEST_MODELS, model.name);
    const stamp = path.join(out, '.toolchain-hash');
    const want = toolchainHash(model);
    if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) continue;
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/setup-debian.sh first`);
    rmSync(out, { recursive: true, force: true });
    console.log(`global-setup: importing ${model.name} to ${path.relative(ROOT, out)} (cached afterwards)`);
    try {
      importModel(model, out);
    } catch (err) {
      throw new Error(
        `importing ${model.name} failed (is the Python toolchain installed? scripts/setup-debian.sh)`,
        { cause: err },
      );
    }
    writeFileSync(stamp, want);
  }
}
