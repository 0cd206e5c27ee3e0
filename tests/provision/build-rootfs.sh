#!/bin/sh
# build-rootfs.sh SUITE ARCH OUTPUT.tar PACKAGE[,PACKAGE...]
# A minimal Debian root filesystem of the kind a device starts from (systemd, python3, apt),
# built with mmdebstrap from the mirror this machine's apt uses, written as a tarball.
set -eu
suite=$1 arch=$2 out=$3 packages=$4
here=$(cd "$(dirname "$0")" && pwd)
mirror=$("$here/../../scripts/debian-mirror.sh")
mkdir -p "$(dirname "$out")"
# --variant=apt: Essential + apt, then exactly the listed packages (no recommends).
mmdebstrap --quiet --format=tar --variant=apt --architectures="$arch" --include="$packages" \
    --aptopt='Acquire::Retries "3"' \
    "$suite" "$out.part" "$mirror"
mv "$out.part" "$out"
