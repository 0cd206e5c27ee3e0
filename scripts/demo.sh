#!/bin/bash
# make demo: Redis with TimeSeries, rva init, capture (vtest.avi, looped), gears and web, all in
# the foreground of this terminal. Ctrl-C stops everything.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RVA_CACHE:-$here/.cache}
port=${RVA_DEMO_REDIS_PORT:-6390}
web_port=${RVA_DEMO_WEB_PORT:-5000}
run=$cache/demo
mkdir -p "$run"
cat >"$run/rva.toml" <<TOML
[redis]
url = "redis://127.0.0.1:$port/0"
[cameras.0]
source = "$cache/footage/vtest.avi"
# The line of the hand-labelled crossings (tests/data/vtest_crossings.toml) and the path's area.
[cameras.0.lines.path]
points = [[330, 185], [330, 375]]
in_side = [400, 270]
[cameras.0.zones.path]
polygon = [[200, 200], [460, 200], [460, 320], [200, 320]]
[web]
host = "0.0.0.0"
port = $web_port
TOML
export RVA_CONFIG=$run/rva.toml RVA_MODEL_CACHE=${RVA_MODEL_CACHE:-$cache/models}
export PATH=$here/.venv/bin:$PATH
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$cache/redis-stack/redis-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$run" --loadmodule "$cache/redis-stack/redistimeseries.so" --logfile "$run/redis.log" &
pids+=($!)
rva init
rva capture & pids+=($!)
rva gears & pids+=($!)
rva web & pids+=($!)
sleep 2
echo
echo "RVA demo running: open http://localhost:$web_port/   (rva top: RVA_CONFIG=$RVA_CONFIG $here/.venv/bin/rva top)"
echo "Ctrl-C stops it."
wait -n "${pids[@]}"
