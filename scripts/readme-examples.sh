#!/usr/bin/env bash
# Regenerates the examples of README.md and the manual from the shipped model: the curl
# example's answer (the ```json block after "<!-- prettier-ignore -->", from a server started
# here) and the command-line examples (the code block after each `<!-- cli:NAME -->` marker),
# in every file that has them; each must be somewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build --silent
single=$(node dist/cli/classify.js models/fashion-pc/samples/0004-shirt.png --timesteps 4 | sed -E 's/, [0-9.]+ ms$/, N ms/')
many=$(node dist/cli/classify.js models/fashion-pc/samples --timesteps 4 2>&1 | grep -v '^classifying with')

port=${README_PORT:-18765}
PORT=$port GRPC_PORT=0 LOG_LEVEL=warn node dist/server.js &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
answer=$(curl -sf -X POST -H 'content-type: image/png' \
  --data-binary @models/fashion-pc/samples/0000-ankle-boot.png \
  "http://127.0.0.1:$port/classify?timesteps=8&topk=2")

node -e '
  const fs = require("fs");
  const [single, many, answer] = process.argv.slice(1);
  const files = ["README.md", "docs/reference/cli.md", "docs/reference/http-api.md"];
  const texts = Object.fromEntries(files.map((f) => [f, fs.readFileSync(f, "utf8")]));
  const replace = (re, text, what) => {
    let found = false;
    for (const f of files)
      if (re.test(texts[f])) {
        found = true;
        texts[f] = texts[f].replace(re, (_m, open, close) => open + text + "\n" + close);
      }
    if (!found) throw new Error("no file has " + what + ": " + files.join(", "));
  };
  for (const [name, text] of [["single", single], ["many", many]])
    replace(new RegExp("(<!-- cli:" + name + " [^\\n]*-->\\n\\n```\\n)[\\s\\S]*?(```\\n)"), text, "cli:" + name + " marker");
  // One line per key, one line per timestep, spaces after colons and commas.
  const a = JSON.parse(answer);
  const line = (v) => JSON.stringify(v).replace(/":/g, "\": ").replace(/,"/g, ", \"");
  const json = [
    "{",
    ...Object.entries(a).map(([k, v], i, all) => {
      const end = i === all.length - 1 ? "" : ",";
      if (k !== "steps") return `  "${k}": ${line(v)}${end}`;
      return `  "steps": [\n${v.map((st, j) => "    " + line(st) + (j === v.length - 1 ? "" : ",")).join("\n")}\n  ]${end}`;
    }),
    "}",
  ].join("\n");
  replace(/(<!-- prettier-ignore -->\n```json\n)[\s\S]*?(```\n)/, json, "curl example");
  for (const f of files) fs.writeFileSync(f, texts[f]);
' "$single" "$many" "$answer"
