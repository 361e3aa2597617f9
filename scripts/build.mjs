#!/usr/bin/env node
// Builds src/ into dist/ with tsc, and only when something it is built from changed since the
// last build: `npm start`, `npm run classify` and the study commands build first, and a full
// tsc run takes seconds that a command which has nothing to rebuild should not pay. The
// incremental build info lives in build/; `--force` rebuilds regardless.
import './check-node.mjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const info = path.join(root, 'build', 'tsbuildinfo', 'src.tsbuildinfo');
const inputs = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'].map((f) => path.join(root, f));

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return latest;
}

const latest = Math.max(
  newest(path.join(root, 'src')),
  ...inputs.filter(existsSync).map((f) => statSync(f).mtimeMs),
);
const fresh =
  !process.argv.includes('--force') &&
  existsSync(info) &&
  existsSync(path.join(root, 'dist', 'server.js')) &&
  statSync(info).mtimeMs >= latest;
if (!fresh) {
  mkdirSync(path.dirname(info), { recursive: true });
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(
    process.execPath,
    [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--incremental', '--tsBuildInfoFile', info],
    { stdio: 'inherit' },
  );
  if (run.status !== 0) process.exit(run.status ?? 1);
  // tsc leaves its build info untouched when nothing it emits changed: mark the build as done.
  const now = new Date();
  utimesSync(info, now, now);
}
