/**
 * Exports the paper's networks (PVGG16, PEfficientNetB0; torchvision architectures, seeded
 * random weights, 32x32 inputs) with the Python toolchain, once: the export is cached under
 * build/test-models and redone only when the toolchain or configs change.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PAPER_MODELS, ROOT, TEST_MODELS } from './paths.js';

const PYTHON = '/usr/bin/python3';

function toolchainHash(config: string): string {
  const hash = createHash('sha256');
  const dir = path.join(ROOT, 'scripts', 'predify');
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.py'))
    .sort()) {
    hash.update(readFileSync(path.join(dir, file)));
  }
  hash.update(readFileSync(path.join(ROOT, 'scripts', 'export_model.py')));
  hash.update(readFileSync(path.join(ROOT, config)));
  return hash.digest('hex');
}

export default function setup(): void {
  for (const model of PAPER_MODELS) {
    const out = path.join(TEST_MODELS, model.name);
    const stamp = path.join(out, '.toolchain-hash');
    const want = toolchainHash(model.config);
    if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) continue;
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/setup-debian.sh first`);
    rmSync(out, { recursive: true, force: true });
    console.log(`global-setup: exporting ${model.name} to ${path.relative(ROOT, out)} (cached afterwards)`);
    try {
      execFileSync(
        PYTHON,
        [
          'scripts/export_model.py',
          '--config',
          model.config,
          '--out',
          out,
          '--input-size',
          '32',
          '--num-classes',
          '10',
          '--golden',
          String(model.golden),
        ],
        { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
      );
    } catch (err) {
      throw new Error(
        `exporting ${model.name} failed (is the Python toolchain installed? scripts/setup-debian.sh)`,
        {
          cause: err,
        },
      );
    }
    writeFileSync(stamp, want);
  }
}
