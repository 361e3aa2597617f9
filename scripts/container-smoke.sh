#!/usr/bin/env bash
# Builds the CPU image with podman on a local Node base image, runs it, waits for /readyz,
# classifies a shipped sample (over HTTP and gRPC), and stops the container (SIGTERM) checking it exits cleanly.
# Then serves a model directory imported as root under a strict umask, mounted read-only, as the
# image's non-root user, and checks that a directory that user may not read is refused by name.
#
#   scripts/container-smoke.sh            (needs root: apt-get install -y podman runc debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${SMOKE_PORT:-18080}
grpc_port=${SMOKE_GRPC_PORT:-18081}
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
run_() { podman_ run --network=host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 -e PORT="$port" -e GRPC_PORT="$grpc_port" "$@"; }
wait_ready() {
  for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$port/readyz"
}
cid=$(run_ -d predify-serve:smoke)
models=$(mktemp -d)
trap 'podman_ rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$models"' EXIT

wait_ready
echo
answer=$(curl -sf -X POST -H 'content-type: image/png' \
  --data-binary @models/fashion-pc/samples/0002-trouser.png "http://127.0.0.1:$port/classify?timesteps=8")
echo "$answer" | node -e '
  const a = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (a.steps.length !== 9 || a.prediction.label !== "Trouser") { console.error("unexpected answer", a.prediction); process.exit(1); }
  console.log(`container answered ${a.prediction.label} (${(a.prediction.confidence * 100).toFixed(1)}%) with ${a.steps.length} steps`);'
# gRPC from the image (its proto files shipped): the Python client, numbers held to /classify's.
/usr/bin/python3 scripts/grpc_client.py --grpc "127.0.0.1:$grpc_port" --http "http://127.0.0.1:$port" \
  models/fashion-pc/samples/0002-trouser.png models/fashion-pc/samples/0008-sandal.png | tail -1

# The stop as `docker stop` sends it (SIGTERM to the container's main process) with requests in
# flight: each must still be answered.
statuses=$(mktemp)
for _ in 1 2 3 4; do
  curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'content-type: image/png' \
    --data-binary @models/fashion-pc/samples/0002-trouser.png "http://127.0.0.1:$port/classify?timesteps=64" >>"$statuses" &
done
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^predify_classify_in_flight 4$' && break
  sleep 0.05
done
podman_ stop -t 15 "$cid" >/dev/null
wait
code=$(podman_ inspect "$cid" --format '{{.State.ExitCode}}')
[ "$code" = "0" ] || { echo "container exited with $code after SIGTERM" >&2; podman_ logs "$cid" | tail -5; exit 1; }
[ "$(grep -c '^200$' "$statuses")" = "4" ] || { echo "requests in flight at the stop answered: $(tr '\n' ' ' <"$statuses")" >&2; exit 1; }
rm -f "$statuses"
echo "container stopped cleanly on SIGTERM (exit 0), the 4 requests in flight answered 200"

podman_ rm -f "$cid" >/dev/null
# A model directory imported as root (umask 077, as a hardened shell has it) and mounted as the
# README shows is served by the image's non-root user.
(umask 077 && /usr/bin/python3 scripts/import_predify.py --config models/predify/presnet18.toml \
  --backbone resnet18 --random-weights 1 --input-size 32 --golden 0 --out "$models/presnet18" >"$models/import.log")
# The summary's first line (read from a file: a pipe into head can close before the importer's
# last write, which then fails with EPIPE under pipefail).
head -1 "$models/import.log"
cid=$(run_ -d -e MODEL_DIR=/models/presnet18 -v "$models/presnet18:/models/presnet18:ro" predify-serve:smoke)
wait_ready
echo
curl -sf -X POST -H 'content-type: image/png' --data-binary @models/fashion-pc/samples/0002-trouser.png \
  "http://127.0.0.1:$port/classify?timesteps=2" | node -e '
  const a = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (a.model !== "presnet18" || a.steps.length !== 3) { console.error("unexpected answer", a); process.exit(1); }
  console.log(`the imported model answered as the non-root user: ${a.model}, ${a.steps.length} steps`);'
podman_ stop -t 15 "$cid" >/dev/null

# A directory that user may not read is refused with its own code and path, not "not found".
chmod 700 "$models/presnet18"
if log=$(run_ --rm -e MODEL_DIR=/models/presnet18 -v "$models/presnet18:/models/presnet18:ro" predify-serve:smoke 2>&1); then
  echo "the server started on a model directory it cannot read" >&2; exit 1
fi
echo "$log" | grep -q 'PREDIFY_ERR_MODEL_PERMISSION_DENIED' || { echo "expected PREDIFY_ERR_MODEL_PERMISSION_DENIED, got:" >&2; echo "$log" | tail -3 >&2; exit 1; }
echo "an unreadable model directory is refused: $(echo "$log" | grep -o 'permission denied reading [^"]*' | head -1)"
