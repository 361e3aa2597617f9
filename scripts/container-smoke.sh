#!/usr/bin/env bash
# Builds the CPU image with podman on a local Node base image, runs it, waits for /readyz,
# classifies a shipped sample, and stops the container (SIGTERM) checking it exits cleanly.
#
#   scripts/container-smoke.sh            (needs root: apt-get install -y podman runc debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${SMOKE_PORT:-18080}
base=${NODE_IMAGE:-localhost/node:24-bookworm-slim}
podman_() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }

[ "$base" != "localhost/node:24-bookworm-slim" ] || scripts/local-node-base.sh "$base"
podman_ build --network=host --build-arg RUNTIME=cpu --build-arg NODE_IMAGE="$base" -t predify-serve:smoke .

# The CPU image's size, against a budget: GPU nodes pull it on every scale-up.
budget_mb=400
size_mb=$(( $(podman_ image inspect predify-serve:smoke --format '{{.Size}}') / 1000000 ))
echo "CPU image size: ${size_mb} MB (budget ${budget_mb} MB)"
[ "$size_mb" -le "$budget_mb" ] || { echo "the CPU image is over its ${budget_mb} MB budget" >&2; exit 1; }

# These sandboxes refuse raising rlimits; podman's defaults raise them, so pin lower ones.
cid=$(podman_ run -d --network=host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 -e PORT="$port" predify-serve:smoke)
trap 'podman_ rm -f "$cid" >/dev/null 2>&1 || true' EXIT

for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/readyz"
echo
answer=$(curl -sf -X POST -H 'content-type: image/png' \
  --data-binary @models/fashion-pc/samples/0002-trouser.png "http://127.0.0.1:$port/classify?timesteps=8")
echo "$answer" | node -e '
  const a = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (a.steps.length !== 9 || a.prediction.label !== "Trouser") { console.error("unexpected answer", a.prediction); process.exit(1); }
  console.log(`container answered ${a.prediction.label} (${(a.prediction.confidence * 100).toFixed(1)}%) with ${a.steps.length} steps`);'

podman_ stop -t 15 "$cid" >/dev/null
code=$(podman_ inspect "$cid" --format '{{.State.ExitCode}}')
[ "$code" = "0" ] || { echo "container exited with $code after SIGTERM" >&2; podman_ logs "$cid" | tail -5; exit 1; }
echo "container stopped cleanly on SIGTERM (exit 0)"
