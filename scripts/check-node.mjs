#!/usr/bin/env node
// Says once, clearly, that this Node.js is too old, instead of a screen of npm's EBADENGINE
// warnings followed by failures that do not name the cause. Run by `npm ci` (preinstall) and
// by every build.
const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  console.error(
    `predify-serve needs Node.js 22 or later (CI and the images use 24 LTS); this is Node ${process.versions.node}, ` +
      'which is not supported (Node 20 reached its end of life in April 2026). ' +
      '`. scripts/use-node-24.sh` puts Node 24 first on PATH for this shell; then run the command again.',
  );
  process.exit(1);
}
