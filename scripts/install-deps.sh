#!/bin/sh
# Install the Debian packages that development, `make demo` and `make test` need, if missing.
#   base:      python3-venv (the project venv), curl
#   test:      redis-server (distro Redis 7, no TimeSeries: the degraded-mode tests), chromium
#              (the page rendered headless), libsystemd-dev + pkg-config (systemd-python)
#              mosquitto (the broker of the MQTT tests and `make demo`), prometheus (a real
#              scrape of rva web)
#   provision: mmdebstrap, systemd-container, ... (the provisioning and image tests)
set -eu
set -- "$@"
pkgs="python3-venv python3-pip curl ca-certificates"
for group in "$@"; do
    case $group in
        base) ;;
        test) pkgs="$pkgs redis-server chromium libsystemd-dev pkg-config gcc python3-dev mosquitto prometheus" ;;
        provision) pkgs="$pkgs mmdebstrap systemd-container arch-test dosfstools mtools fdisk e2fsprogs" ;;
        image) pkgs="$pkgs mmdebstrap arch-test qemu-user-static binfmt-support dosfstools mtools fdisk e2fsprogs zstd xz-utils qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 openssh-client" ;;
        *) echo "install-deps: unknown group $group" >&2; exit 2 ;;
    esac
done
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages:$missing" >&2
    echo "install-deps: run: sudo apt-get install$missing" >&2
    exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
