#!/bin/sh
# mmdebstrap essential hook ($1: the root): before the kernel is installed, make initramfs-tools
# include only the listed modules (arch/<arch>.conf INITRAMFS_MODULES) instead of "most". Under
# qemu-user the default initramfs takes ~18 minutes to build for arm64; this one takes seconds,
# and it is small on the boot partition.
set -eu
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
cat >"$1/etc/initramfs-tools/conf.d/rva.conf" <<'CFG'
# RVA image: only the modules needed to find and mount the root filesystem
# (/usr/share/initramfs-tools/modules.d/rva-image). MODULES=most includes every storage driver.
MODULES=list
COMPRESS=zstd
# The root file system's type, which the fsck hook cannot probe at build time (LABEL=rva-root
# exists only in the finished image): the initramfs then checks the root before mounting it.
FSTYPE=ext4
CFG
{
    echo "# Modules for the RVA image's initramfs (image-build/arch/*.conf), with MODULES=list."
    for m in $RVA_INITRAMFS_MODULES; do echo "$m"; done
} >"$1/usr/share/initramfs-tools/modules.d/rva-image"
