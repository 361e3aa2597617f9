#!/usr/bin/env bash
# How the server stops on each way a stop arrives, measured: it starts the server (npm's build,
# dist/server.js) in a process group of its own, puts 6 requests of 32 timesteps in flight,
# sends the stop, and prints the requests' statuses, the exit code and how long the stop took.
#   scripts/stop-paths.sh [ENGINE_ISOLATION]      (docs/reliability.md, "Stopping")
# The ways:
#   pid-term     SIGTERM to the server's PID: docker stop, Kubernetes, systemd KillMode=mixed,
#                docker run --init (tini forwards to its child)
#   group-term   SIGTERM to every process of the group: kill -- -PGID, systemd's default
#                KillMode=control-group, tini -g
#   group-int    SIGINT to the group: Ctrl-C in a terminal
#   group-twice  SIGTERM to the group, then SIGINT 0.3 s later: the second stops at once
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/use-node-24.sh >/dev/null
isolation=${1:-process}
port=$(node -e 's=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})')
image=models/fashion-pc/samples/0002-trouser.png

one() {
  local way=$1
  ENGINE_ISOLATION=$isolation PORT=$port GRPC_PORT=0 LOG_LEVEL=warn setsid node dist/server.js >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local statuses
  statuses=$(mktemp)
  for _ in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'content-type: image/png' --data-binary @"$image" \
      "http://127.0.0.1:$port/classify?timesteps=32" >>"$statuses" &
  done
  for _ in $(seq 1 400); do
    curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^predify_classify_in_flight 6$' && break
    sleep 0.02
  done
  local started
  started=$(date +%s.%N)
  case $way in
    pid-term) kill -TERM "$pid" ;;
    group-term) kill -TERM -- "-$pid" ;;
    group-int) kill -INT -- "-$pid" ;;
    group-twice) kill -TERM -- "-$pid"; sleep 0.3; kill -INT -- "-$pid" ;;
  esac
  local code=0
  wait "$pid" || code=$?
  local took
  took=$(echo "$(date +%s.%N) - $started" | bc)
  wait # the requests
  local left later
  left=$(pgrep -g "$pid" | wc -l || true)
  sleep 2
  later=$(pgrep -g "$pid" | wc -l || true)
  printf '| %-11s | %-9s | %-12s | %4s | %6.2f s | %s, 2 s later %s |\n' "$way" "$isolation" \
    "$(sort "$statuses" | uniq -c | awk '{printf "%s x%s ", $2, $1}')" "$code" "$took" "$left" "$later"
  rm -f "$statuses"
}

echo "scripts/stop-paths.sh $isolation, $(date -u +%Y-%m-%d), node $(node --version)"
echo '| stop        | isolation | 6 requests   | exit | took     | processes of the group left |'
echo '| ----------- | --------- | ------------ | ---- | -------- | --------------------------- |'
for way in ${WAYS:-pid-term group-term group-int group-twice}; do one "$way"; done
