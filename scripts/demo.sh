#!/bin/bash
# make demo: Redis with TimeSeries, rva init, capture (vtest.avi, looped), gears and web, all in
# the foreground of this terminal. One Ctrl-C stops everything: the rva services first (Redis
# still up, so none of them is left waiting for it), then Redis; whatever has not stopped 10 s
# later is killed, and a second Ctrl-C kills at once.
#
# What the demo does is kept in .cache/demo/: Redis saves its data there (totals, series, lines
# and zones saved from the page), and rva.toml is written only when it is missing or still as
# this script wrote it (its checksum beside it), so a config changed by hand is kept.
# make demo-reset (demo.sh --reset) removes both, and refuses while a demo runs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RVA_CACHE:-$here/.cache}
port=${RVA_DEMO_REDIS_PORT:-6390}
web_port=${RVA_DEMO_WEB_PORT:-5000}
run=$cache/demo
config=$run/rva.toml
generated=$run/rva.toml.generated.sha256  # the checksum of the config as last written here
data=$run/dump.rdb
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
checksum() { sha256sum <"$1" | cut -d ' ' -f 1; }
as_written() { [ -f "$generated" ] && [ "$(checksum "$config")" = "$(cat "$generated")" ]; }

if [ "${1:-}" = --reset ]; then
    if answers "$port"; then
        echo "demo-reset: refused: a demo is running (its Redis answers on 127.0.0.1:$port);" \
            "stop it first (Ctrl-C where it runs)" >&2
        exit 1
    fi
    gone=()
    for f in "$data" "$config" "$generated"; do [ -e "$f" ] && gone+=("$f"); done
    if ((${#gone[@]} == 0)); then
        echo "demo-reset: nothing to remove in $run"
        exit 0
    fi
    echo "demo-reset: removing the demo's Redis data and config: ${gone[*]}"
    if [ -e "$config" ] && ! as_written; then
        cp -p "$config" "$config.bak"
        echo "demo-reset: $config was changed by hand: a copy stays in $config.bak"
    fi
    rm -f -- "${gone[@]}"
    exit 0
fi
mkdir -p "$run"
# MQTT / Home Assistant: a local mosquitto (when installed; RVA_DEMO_MQTT=0 leaves it out) with
# rva mqtt publishing to it, anonymous and on loopback only.
mqtt_port=${RVA_DEMO_MQTT_PORT:-1884}
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
mqtt=
if [ "${RVA_DEMO_MQTT:-1}" != 0 ] && [ -x "$mosquitto" ]; then
    mqtt=1
fi
if [ -n "$mqtt" ] && answers "$mqtt_port"; then
    echo "demo: port $mqtt_port is busy (set RVA_DEMO_MQTT_PORT): no MQTT this time" >&2
    mqtt=
fi
generate() {
    cat <<TOML
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
    if [ -n "$mqtt" ]; then
        printf '[mqtt]\nhost = "127.0.0.1"\nport = %s\n' "$mqtt_port"
    fi
}
if [ ! -e "$config" ] || as_written; then
    generate >"$config"
    checksum "$config" >"$generated"
else
    echo "demo: keeping $config as changed by hand (make demo-reset starts afresh)" >&2
fi
if [ -n "$mqtt" ] && ! grep -q '^\[mqtt\]' "$config"; then
    echo "demo: no [mqtt] table in $config: no MQTT this time" >&2
    mqtt=
fi
if [ -n "$mqtt" ]; then
    printf 'user %s\nlistener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file %s\n' \
        "$(id -un)" "$mqtt_port" "$run/mosquitto.log" >"$run/mosquitto.conf"
fi
# The demo's ports, whatever a kept config says: Redis by URL (it beats redis.url), the page
# by rva web --port.
export RVA_REDIS_URL=redis://127.0.0.1:$port/0
export RVA_CONFIG=$run/rva.toml RVA_MODEL_CACHE=${RVA_MODEL_CACHE:-$cache/models}
export PATH=$here/.venv/bin:$PATH
pids=() redis_pid=
# TERM the given processes, wait up to 10 s for them to end, then KILL what is left.
stop() {
    local left=("$@") i p alive
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 100 && ${#left[@]}; i++)); do
        sleep 0.1
        alive=()
        for p in "${left[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
        left=("${alive[@]}")
    done
    if ((${#left[@]})); then
        echo "demo: process(es) ${left[*]} still running after 10 s: killed" >&2
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
}
cleanup() {
    trap - EXIT
    # A second Ctrl-C (or TERM) while stopping: no more waiting.
    trap 'kill -KILL "${pids[@]}" $redis_pid 2>/dev/null || true' INT TERM
    echo "demo: stopping" >&2
    if ((${#pids[@]})); then stop "${pids[@]}"; fi
    if [ -n "$redis_pid" ]; then stop "$redis_pid"; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
# Redis runs in a session of its own, out of reach of the terminal's Ctrl-C: it is stopped last,
# after the services that use it.
# A snapshot in $run every minute with a change, and one more when Redis stops (it saves on
# SIGTERM when save points are set): a restarted demo goes on from where it stopped.
setsid "$cache/redis-stack/redis-server" --port "$port" --bind 127.0.0.1 --save "60 1" \
    --appendonly no --dir "$run" --dbfilename "$(basename "$data")" \
    --loadmodule "$cache/redis-stack/redistimeseries.so" --logfile "$run/redis.log" &
redis_pid=$!
# Ours, not another server already on that port, and done loading what the last demo saved.
redis_ready() {
    local info
    info=$("$cache/redis-stack/redis-cli" -p "$port" info server persistence 2>/dev/null |
        tr -d '\r') || return 1
    grep -qx "process_id:$redis_pid" <<<"$info" && grep -qx "loading:0" <<<"$info"
}
for ((i = 0; ; i++)); do
    redis_ready && break
    if ! kill -0 "$redis_pid" 2>/dev/null || ((i > 300)); then
        echo "demo: redis-server did not start on port $port (busy? set RVA_DEMO_REDIS_PORT); its log:" >&2
        tail -n 5 "$run/redis.log" >&2
        exit 1
    fi
    sleep 0.1
done
rva init
rva capture & pids+=($!)
rva gears & pids+=($!)
rva web --port "$web_port" & pids+=($!)
if [ -n "$mqtt" ]; then
    echo "demo: starting mosquitto, an MQTT broker for rva mqtt, on 127.0.0.1:$mqtt_port" \
        "(RVA_DEMO_MQTT=0 leaves it out)" >&2
    "$mosquitto" -c "$run/mosquitto.conf" & pids+=($!)
    rva mqtt & pids+=($!)
fi
sleep 2
if [ -n "$mqtt" ]; then
    echo
    echo "MQTT: mosquitto on 127.0.0.1:$mqtt_port; a Home Assistant using it would discover:"
    python "$here/scripts/mqtt-discovered.py" 127.0.0.1 "$mqtt_port" || true
fi
echo
echo "RVA demo running: open http://localhost:$web_port/   (rva top: RVA_CONFIG=$RVA_CONFIG $here/.venv/bin/rva top)"
echo "Ctrl-C stops it."
wait -n "${pids[@]}"
