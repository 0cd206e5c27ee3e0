# 50 image: the disk image, assembled in files without loop devices: the boot partition's
# directory becomes a FAT file system (mkfs.vfat -C, filled with mtools), the rest an ext4 file
# system (mke2fs -d), both written into a file that sfdisk partitioned (dd conv=notrunc).
# Partitions are found by label (LABEL=rva-root, LABEL=RVA-BOOT: fstab, systemd-boot) and, on a
# Raspberry Pi, the root partition by PARTUUID in cmdline.txt.

IMG=$WORK/$NAME.img
mkdir -p "$WORK/boot"
mv "$ROOT$BOOT_DIR"/* "$WORK/boot/"

# The boot partition: FAT32 (the Raspberry Pi firmware and UEFI both read it).
boot_used=$(du -sm "$WORK/boot" | cut -f1)
[ "$boot_used" -lt "$((BOOT_SIZE_MIB - 16))" ] || die "boot files ($boot_used MiB) do not fit BOOT_SIZE_MIB=$BOOT_SIZE_MIB"
rm -f "$WORK/boot.vfat"
mkfs.vfat -C -F 32 -n "$BOOT_LABEL" "$WORK/boot.vfat" $((BOOT_SIZE_MIB * 1024)) >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$WORK/boot.vfat" "$WORK/boot"/* ::/
fsck.vfat -n "$WORK/boot.vfat" >/dev/null

# --ab: what updates keep moves to the data partition (the root keeps the empty mount points,
# with their owners and modes): RVA's /etc/rva (config, credentials, users file) and Redis's
# directory (the counts); RAUC's status goes there too (system.conf's data-directory).
if [ "$AB" = 1 ]; then
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data/etc" "$WORK/data/rauc"
    for kept in etc/rva:etc/rva var/lib/redis:redis; do
        from=$ROOT/${kept%%:*} to=$WORK/data/${kept#*:}
        cp -a "$from" "$to"
        find "$from" -mindepth 1 -delete
    done
fi

# The root partition: what it holds plus room for the first boot (it grows to the card then).
root_used=$(du -sm "$ROOT" | cut -f1)
ROOT_SIZE_MIB=$(((root_used * 115 / 100 + 256 + 3) / 4 * 4))
rm -f "$WORK/root.ext4"
truncate -s "${ROOT_SIZE_MIB}M" "$WORK/root.ext4"
mke2fs -q -F -t ext4 -L "$ROOT_LABEL" -i 8192 -d "$ROOT" "$WORK/root.ext4"
e2fsck -fn "$WORK/root.ext4" >/dev/null 2>&1 || die "e2fsck found errors in the new root file system"

if [ "$AB" = 1 ]; then
    # A slot's size is fixed for the device's life: room for roots larger than this one.
    SLOT_SIZE_MIB=${RVA_AB_SLOT_MIB:-2048}
    [ "$ROOT_SIZE_MIB" -le "$SLOT_SIZE_MIB" ] || die "the root file system ($ROOT_SIZE_MIB MiB) does not fit a slot (RVA_AB_SLOT_MIB=$SLOT_SIZE_MIB)"
    DATA_SIZE_MIB=256
    rm -f "$WORK/data.ext4"
    truncate -s "${DATA_SIZE_MIB}M" "$WORK/data.ext4"
    mke2fs -q -F -t ext4 -L rva-data -d "$WORK/data" "$WORK/data.ext4"
    e2fsck -fn "$WORK/data.ext4" >/dev/null 2>&1 || die "e2fsck found errors in the new data file system"
    # The update bundle of this very root, next to the image.
    "$HERE/bundle" --board "$BOARD" --rootfs "$WORK/root.ext4" --version "$VERSION" --out "$OUT" \
        --keys "$CACHE/rauc-dev"
fi

# Partition table: 1 MiB alignment, boot first, root last so that it can grow; 1 MiB spare at
# the end for GPT's backup header.
boot_start=2048
root_start=$((boot_start + BOOT_SIZE_MIB * 2048))
disk_mib=$((1 + BOOT_SIZE_MIB + ROOT_SIZE_MIB + 1))
rm -f "$IMG"
if [ "$AB" = 1 ]; then
    # ESP, slot A (this root), slot B (empty until the first update), data (grows at first boot).
    b_start=$((root_start + SLOT_SIZE_MIB * 2048))
    data_start=$((b_start + SLOT_SIZE_MIB * 2048))
    disk_mib=$((1 + BOOT_SIZE_MIB + 2 * SLOT_SIZE_MIB + DATA_SIZE_MIB + 1))
    truncate -s "${disk_mib}M" "$IMG"
    printf '%s\n' "label: gpt" "unit: sectors" \
        "start=$boot_start, size=$((BOOT_SIZE_MIB * 2048)), type=U, name=\"$BOOT_LABEL\"" \
        "start=$root_start, size=$((SLOT_SIZE_MIB * 2048)), type=L, name=\"rva-root-a\"" \
        "start=$b_start, size=$((SLOT_SIZE_MIB * 2048)), type=L, name=\"rva-root-b\"" \
        "start=$data_start, size=$((DATA_SIZE_MIB * 2048)), type=L, name=\"rva-data\"" |
        sfdisk --quiet "$IMG"
    dd if="$WORK/data.ext4" of="$IMG" bs=1M seek=$((data_start / 2048)) conv=notrunc,sparse status=none
    rm -f "$WORK/data.ext4"
    rm -rf "$WORK/data"
elif [ "$PARTITION_TABLE" = gpt ]; then
    truncate -s "${disk_mib}M" "$IMG"
    # U: EFI system partition, L: Linux file system.
    printf '%s\n' "label: gpt" "unit: sectors" \
        "start=$boot_start, size=$((BOOT_SIZE_MIB * 2048)), type=U, name=\"$BOOT_LABEL\"" \
        "start=$root_start, size=$((ROOT_SIZE_MIB * 2048)), type=L, name=\"$ROOT_LABEL\"" |
        sfdisk --quiet "$IMG"
else
    truncate -s "${disk_mib}M" "$IMG"
    # c: FAT32 (LBA), which the Raspberry Pi boot ROM looks for; 83: Linux.
    # label-id: the disk identifier cmdline.txt names the root partition by (30-board.sh).
    printf '%s\n' "label: dos" "label-id: 0x$DISK_ID" "unit: sectors" \
        "start=$boot_start, size=$((BOOT_SIZE_MIB * 2048)), type=c, bootable" \
        "start=$root_start, size=$((ROOT_SIZE_MIB * 2048)), type=83" |
        sfdisk --quiet "$IMG"
fi
dd if="$WORK/boot.vfat" of="$IMG" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$((1 + BOOT_SIZE_MIB)) conv=notrunc,sparse status=none
rm -f "$WORK/boot.vfat" "$WORK/root.ext4"
log "$(basename "$IMG"): $disk_mib MiB (boot $BOOT_SIZE_MIB MiB, $boot_used MiB used; root $ROOT_SIZE_MIB MiB, $root_used MiB used)"
