#!/usr/bin/env bash
# Regenerates the command-line examples in README.md (the code block after each
# `<!-- cli:NAME -->` marker): real output of the shipped model, timings shown as N.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build --silent
single=$(node dist/cli/classify.js models/fashion-pc/samples/0004-shirt.png --timesteps 4 | sed -E 's/, [0-9.]+ ms$/, N ms/')
many=$(node dist/cli/classify.js models/fashion-pc/samples --timesteps 4 2>&1 | grep -v '^classifying with')
node -e '
  const fs = require("fs");
  const [single, many] = process.argv.slice(1);
  let s = fs.readFileSync("README.md", "utf8");
  for (const [name, text] of [["single", single], ["many", many]]) {
    const re = new RegExp("(<!-- cli:" + name + " [^\\n]*-->\\n\\n```\\n)[\\s\\S]*?(```\\n)");
    if (!re.test(s)) throw new Error("README.md has no cli:" + name + " marker");
    s = s.replace(re, (_m, open, close) => open + text + "\n" + close);
  }
  fs.writeFileSync("README.md", s);
' "$single" "$many"
