#!/usr/bin/env bash
# The GPU measurement docs/gpu.md asks for, prepared for a session that is lent a GPU machine
# (the `device` tool: CUDA, PyTorch, no onnxruntime for Node). For each model, the reference
# dynamics in PyTorch (scripts/bench_reference.py) with the state kept on the device against
# the same loop copying the state to the host and back after every timestep, in FP32 and TF32:
# the gap docs/gpu.md estimates between per-call engines and a Loop graph.
#
#   scripts/gpu-check.sh            # on the GPU machine, from the repository root
#   DEVICE=cpu MODELS=fashion-pc BATCHES="1 4" SECONDS_EACH=0.5 scripts/gpu-check.sh   # a dry run here
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MODELS=${MODELS:-fashion-pc pvgg16 pefficientnet_b0}
BATCHES=${BATCHES:-1 32}
SECONDS_EACH=${SECONDS_EACH:-3}
out=$(mktemp)
for model in ${MODELS//,/ }; do
  case $model in
    fashion-pc) args=(--model models/fashion-pc) ;;
    pvgg16) args=(--model models/predify/pvgg16.toml --backbone vgg16) ;;
    pefficientnet_b0) args=(--model models/predify/pefficientnet_b0.toml --backbone efficientnet_b0) ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
  esac
  for precision in fp32 tf32; do
    [ "$DEVICE" = cpu ] && [ "$precision" = tf32 ] && continue
    for where in device host; do
      flags=(--device "$DEVICE" --batches $BATCHES --seconds "$SECONDS_EACH")
      [ "$precision" = tf32 ] && flags+=(--tf32)
      [ "$where" = host ] && flags+=(--state-through-host)
      if ! line=$("$PYTHON" scripts/bench_reference.py "${args[@]}" "${flags[@]}"); then
        echo "$model $precision $where: failed (see above)" >&2
        continue
      fi
      echo "{\"model\": \"$model\", \"precision\": \"$precision\", \"state\": \"$where\", \"run\": $line}" | tee -a "$out"
    done
  done
done
"$PYTHON" - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("\n| model | precision | state | batch | sample-steps/s |\n| --- | --- | --- | --- | --- |")
for r in rows:
    for res in r["run"]["results"]:
        print(f"| {r['model']} | {r['precision']} | {r['state']} | {res['batch']} | {res['sampleStepsPerSecond']:.1f} |")
PY
rm -f "$out"
