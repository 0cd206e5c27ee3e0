#!/bin/bash
# boot-raspi4b.sh IMAGE [SECONDS]: boot an RVA Raspberry Pi 4 image (image-build --board rpi4
# --pi-source debian) on QEMU's raspi4b machine, with the kernel, device tree, initramfs and
# command line taken from the image's own boot partition, and report how far it got: the
# kernel, the root file system, systemd, Redis and each RVA unit, read from the serial console.
#
# raspi4b needs QEMU 9.0 or later; this host's Debian 12 has 7.2. So QEMU runs from a Debian 13
# root made with mmdebstrap the way the images' roots are (cached in $RVA_CACHE/qemu-trixie/).
# The image is never written: QEMU boots a qcow2 overlay (the SD card's size must be a power of
# two) with -snapshot. Prints one line per milestone with its time; exits 0 when every RVA unit
# started. Needs root, mmdebstrap, mtools. docs/raspberry-pi.md says what it showed.
set -euo pipefail

IMAGE=$(realpath "$1")
LIMIT=${2:-900}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${RVA_CACHE:-$REPO/.cache}/qemu-trixie
ROOT=$CACHE/root
WORK=$(mktemp -d "${TMPDIR:-/tmp}/raspi4b.XXXXXX")
trap 'umount "$ROOT/work" 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ ! -x "$ROOT/usr/bin/qemu-system-aarch64" ] || [ ! -x "$ROOT/usr/bin/fdtput" ]; then
    mirror=$("$HERE/debian-mirror.sh")
    rm -rf "$ROOT" && mkdir -p "$CACHE"
    echo "boot-raspi4b: Debian 13 root with qemu-system-arm in $ROOT (once)" >&2
    mmdebstrap --quiet --variant=apt --include=qemu-system-arm,qemu-utils,device-tree-compiler \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        trixie "$ROOT" "$mirror"
fi
echo "qemu: $(chroot "$ROOT" qemu-system-aarch64 --version | head -n1)"

# The boot partition's files, as the Pi's firmware would read them.
offset=$(($(sfdisk --json "$IMAGE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') * 512))
export MTOOLS_SKIP_CHECK=1
mdir -b -i "$IMAGE@@$offset" ::/ >"$WORK/boot.list"
kernel=$(grep -o 'vmlinuz-[^ ]*$' "$WORK/boot.list" | head -n1)
initrd=$(grep -o 'initrd.img-[^ ]*$' "$WORK/boot.list" | head -n1)
for f in "$kernel" "$initrd" bcm2711-rpi-4-b.dtb cmdline.txt config.txt; do
    mcopy -n -i "$IMAGE@@$offset" "::/$f" "$WORK/$f"
done
cmdline=$(tr -d '\n' <"$WORK/cmdline.txt")
echo "boot files: $kernel, $initrd, bcm2711-rpi-4-b.dtb; cmdline.txt: $cmdline"

# An SD card of 2^n bytes over the image, inside the QEMU root's view.
mkdir -p "$ROOT/work"
mount --bind "$WORK" "$ROOT/work"
# The SD slot's supplies are GPIO regulators on the firmware's GPIO expander, which QEMU's
# firmware model does not answer (-EIO): without them in the device tree, emmc2 probes.
for supply in vqmmc-supply vmmc-supply; do
    chroot "$ROOT" fdtput -d /work/bcm2711-rpi-4-b.dtb /emmc2bus/mmc@7e340000 "$supply"
done
cp "$IMAGE" "$WORK/card.img"
size=1
while [ "$size" -lt "$(stat -c %s "$IMAGE")" ]; do size=$((size * 2)); done
chroot "$ROOT" qemu-img create -q -f qcow2 -F raw -b /work/card.img /work/card.qcow2 "$size"

# What QEMU 10's raspi4b lacks, worked around on the kernel command line (each found by a
# kernel panic at boot, read on the console): the HDMI block's interrupt controller and I2C
# (brcmstb_l2, brcmstb_i2c: their registers abort), clock gates it does not model (left alone:
# clk_ignore_unused). The console: the PL011 (ttyAMA0), QEMU's first serial port; the image's
# own ttyS1 (the mini UART) stays silent there. Unit states go to the console (show_status), the
# journal too, for what RVA says.
QUIRKS="earlycon=pl011,mmio32,0xfe201000 console=ttyAMA0 initcall_blacklist=brcmstb_l2_driver_init,brcmstb_i2c_driver_init clk_ignore_unused"
start=$SECONDS
chroot "$ROOT" timeout "$LIMIT" qemu-system-aarch64 -M raspi4b -accel tcg \
    -kernel "/work/$kernel" -initrd "/work/$initrd" -dtb /work/bcm2711-rpi-4-b.dtb \
    -append "$cmdline $QUIRKS systemd.show_status=1 systemd.journald.forward_to_console=1" \
    -drive file=/work/card.qcow2,if=sd,format=qcow2 -snapshot \
    -serial file:/work/console.log -serial file:/work/ttyS1.log \
    -display none -monitor none -no-reboot >"$WORK/qemu.log" 2>&1 &
qemu=$!

milestone() { # PATTERN NAME: the first time PATTERN shows on the console
    if [ -z "${seen[$2]:-}" ] && grep -qaE "$1" "$WORK/console.log" 2>/dev/null; then
        seen[$2]=$((SECONDS - start))
        echo "  ${seen[$2]} s: $2"
    fi
}
declare -A seen
names=(kernel initramfs "SD controller (emmc2)" "SD card" "root not found" rootfs systemd redis-server
    rva-init rva-capture rva-gears rva-web "camera status")
patterns=('Linux version' 'Loading, please wait' 'mmc[0-9]: SDHCI controller on fe340000' 'mmcblk[0-9]: p1 p2'
    'PARTUUID=[0-9a-f-]+ does not exist' 'EXT4-fs \(mmcblk[0-9]p2\): mounted' 'systemd\[1\]: systemd [0-9]+ running'
    'Started redis-server.service' 'Finished rva-init.service|Started rva-init' 'Started rva-capture.service'
    'Started rva-gears.service' 'Started rva-web.service' 'no camera found')
while kill -0 "$qemu" 2>/dev/null; do
    for i in "${!names[@]}"; do milestone "${patterns[i]}" "${names[i]}"; done
    [ -n "${seen[rva-web]:-}" ] && [ -n "${seen[rva-gears]:-}" ] && [ -n "${seen[rva-capture]:-}" ] && break
    [ -n "${seen[root not found]:-}" ] && break
    sleep 2
done
for i in "${!names[@]}"; do milestone "${patterns[i]}" "${names[i]}"; done
kill "$qemu" 2>/dev/null || true
wait "$qemu" 2>/dev/null || true
mkdir -p "${RVA_CACHE:-$REPO/.cache}/raspi4b"
cp "$WORK"/console.log "$WORK"/qemu.log "${RVA_CACHE:-$REPO/.cache}/raspi4b/" 2>/dev/null || true
echo "logs: ${RVA_CACHE:-$REPO/.cache}/raspi4b/"
failed=$(grep -aoE 'Failed to start [^ ]+' "$WORK/console.log" | sort -u | paste -sd' ' || true)
[ -n "$failed" ] && echo "failed: $failed"
[ -n "${seen[rva-web]:-}" ] && [ -n "${seen[rva-gears]:-}" ] && [ -n "${seen[rva-capture]:-}" ]
