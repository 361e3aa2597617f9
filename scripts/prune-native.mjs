#!/usr/bin/env node
// Keeps only this platform's native binaries in an installed node_modules (for the images):
// onnxruntime-node ships bin/napi-v*/<platform>/<arch> for every platform it supports, and
// sharp's per-platform packages (@img/sharp-*) must be this platform's only. The layout is
// checked, not assumed: when an upgrade changes it, this fails the build instead of leaving
// the image unpruned.
//
//   node scripts/prune-native.mjs [--root DIR] [--platform linux] [--arch x64]
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    root: { type: 'string', default: '.' },
    platform: { type: 'string', default: process.platform },
    arch: { type: 'string', default: process.arch },
  },
});
const { platform, arch } = values;
const modules = path.join(values.root, 'node_modules');
const fail = (message) => {
  console.error(`prune-native: ${message}`);
  process.exit(1);
};
const dirs = (dir) => readdirSync(dir).filter((name) => statSync(path.join(dir, name)).isDirectory());
let removed = 0;
const remove = (target) => {
  removed += 1;
  rmSync(target, { recursive: true, force: true });
  console.log(`prune-native: removed ${path.relative(values.root, target)}`);
};

// onnxruntime-node: bin/napi-vN/<platform>/<arch>/onnxruntime_binding.node
const ortBin = path.join(modules, 'onnxruntime-node', 'bin');
if (!existsSync(ortBin)) fail(`${ortBin} is missing: has onnxruntime-node's layout changed?`);
const napis = dirs(ortBin).filter((d) => /^napi-v\d+$/.test(d));
if (napis.length === 0) fail(`no napi-v* directory in ${ortBin}: has onnxruntime-node's layout changed?`);
for (const napi of napis) {
  const byPlatform = path.join(ortBin, napi);
  const keep = path.join(byPlatform, platform, arch, 'onnxruntime_binding.node');
  if (!existsSync(keep)) fail(`${keep} is missing: no onnxruntime binding for ${platform}/${arch}`);
  for (const p of dirs(byPlatform)) {
    if (p !== platform) remove(path.join(byPlatform, p));
    else for (const a of dirs(path.join(byPlatform, p))) if (a !== arch) remove(path.join(byPlatform, p, a));
  }
}

// sharp: its native parts are the packages @img/sharp-<platform>-<arch> and
// @img/sharp-libvips-<platform>-<arch> (npm installs only the matching ones; others are removed).
const img = path.join(modules, '@img');
if (!existsSync(path.join(modules, 'sharp'))) fail('sharp is not installed');
const own = [`sharp-${platform}-${arch}`, `sharp-libvips-${platform}-${arch}`];
for (const name of own)
  if (!existsSync(path.join(img, name))) fail(`@img/${name} is missing: has sharp's layout changed?`);
for (const name of dirs(img)) if (/^sharp-/.test(name) && !own.includes(name)) remove(path.join(img, name));

console.log(`prune-native: kept ${platform}/${arch} only (${removed} directories removed)`);
