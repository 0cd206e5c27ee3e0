# 30 board: what makes the provisioned root boot on this board. The board file's settings become
# the files its boot packages read (/etc/default/raspi-firmware*, /etc/kernel/cmdline), the
# overlays (overlays/<name>/, laid out as on the target) go in, then the board packages, whose
# hooks fill the boot partition's directory ($BOOT_DIR). Then the first-boot units from rootfs/,
# the user's --overlay directories and rva.toml for the boot partition.

ROOT_LABEL=rva-root
BOOT_LABEL=RVA-BOOT

rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount_root_fs "$ROOT"

copy_tree() { tar -C "$1" --owner=0 --group=0 -cf - . | tar -C "$ROOT" --no-overwrite-dir -xf -; }
# --ab: the RAUC backend, the trial boot's health check, the data partition's fstab (after efi's).
[ "$AB" = 0 ] || OVERLAYS+=(ab)
for overlay in "${OVERLAYS[@]}"; do
    copy_tree "$HERE/overlays/$overlay"
done
mkdir -p "$ROOT$BOOT_DIR"

# --pi-source raspberrypi: Raspberry Pi's archive in the image's sources, its key checked against
# the fingerprint in raspberrypi.conf, and its kernel, firmware and camera stack as the board
# packages (Debian's kernel is removed below, as for BOARD_KERNEL_SUITE).
rpi_archive() {
    # shellcheck source=../raspberrypi.conf
    . "$HERE/raspberrypi.conf"
    local key=$WORK/raspberrypi.gpg.key fingerprints
    log "Raspberry Pi archive $RPI_ARCHIVE (key $RPI_ARCHIVE_KEY_URL)"
    curl -fsSL --retry 3 -o "$key" "$RPI_ARCHIVE_KEY_URL" || die "cannot fetch $RPI_ARCHIVE_KEY_URL: builders without access to Raspberry Pi's archive use --pi-source debian (no camera modules)"
    # The fingerprint, and self-signatures that Debian 13's APT still accepts (not SHA-1 only).
    python3 "$HERE/lib/keycheck.py" "$key" "$RPI_ARCHIVE_KEY_FINGERPRINT" >&2 || die "$RPI_ARCHIVE_KEY_URL: refused (above)"
    # Only until raspberrypi-archive-keyring (one of RPI_PACKAGES) is installed: then the
    # sources name its keyring, so that a rotated key arrives with the package's updates.
    install -D -m 0644 "$key" "$ROOT/etc/apt/keyrings/raspberrypi-archive.asc"
    # raspi.sources: the name Raspberry Pi OS (trixie) uses, so ansible/site.yml applied on this
    # image later takes it for Raspberry Pi OS (rva_camera's preflight).
    cat >"$ROOT/etc/apt/sources.list.d/raspi.sources" <<EOF
# Raspberry Pi's archive: kernel, boot firmware, libcamera, picamera2 (image-build --pi-source raspberrypi).
Types: deb
URIs: $RPI_ARCHIVE
Suites: $SUITE
Components: main
Signed-By: /etc/apt/keyrings/raspberrypi-archive.asc
EOF
    PACKAGES=("$RPI_KERNEL_PACKAGE" "${RPI_PACKAGES[@]}")
    BOARD_KERNEL_SUITE=""
    mapfile -t old_kernels < <(in_root dpkg-query -W -f '${db:Status-Status} ${Package}\n' \
        'linux-image-*' | awk '$1 == "installed" { print $2 }')
}
old_kernels=()

# Raspberry Pi's raspi-firmware hooks copy the kernel and the initramfs under the names the
# firmware loads (RPI_KERNEL_IMAGE, RPI_INITRAMFS of the board file; the facts file says where
# the names come from): both must be there, and be the installed kernel's, not a leftover.
check_rpi_boot_files() {
    local versions version
    mapfile -t versions < <(in_root dpkg-query -W -f '${db:Status-Status} ${Package}\n' 'linux-image-[0-9]*' \
        | awk '$1 == "installed" { sub(/^linux-image-/, "", $2); print $2 }')
    [ ${#versions[@]} -eq 1 ] || die "expected one installed kernel, found: ${versions[*]:-none}"
    version=${versions[0]}
    [ -f "$ROOT$BOOT_DIR/$RPI_KERNEL_IMAGE" ] || die "$RPI_KERNEL_IMAGE is not in $BOOT_DIR (raspi-firmware's kernel hook did not run?)"
    [ -f "$ROOT$BOOT_DIR/$RPI_INITRAMFS" ] || die "$RPI_INITRAMFS is not in $BOOT_DIR (raspi-firmware's initramfs hook did not run?)"
    cmp -s "$ROOT/boot/vmlinuz-$version" "$ROOT$BOOT_DIR/$RPI_KERNEL_IMAGE" || die "$BOOT_DIR/$RPI_KERNEL_IMAGE is not /boot/vmlinuz-$version"
    cmp -s "$ROOT/boot/initrd.img-$version" "$ROOT$BOOT_DIR/$RPI_INITRAMFS" || die "$BOOT_DIR/$RPI_INITRAMFS is not /boot/initrd.img-$version"
    log "boot files: $RPI_KERNEL_IMAGE and $RPI_INITRAMFS are kernel $version's"
}
# An MBR's disk identifier, made here so that cmdline.txt can name the root partition by it
# (root=PARTUUID=<id>-02, as pi-gen does): the kernel finds it without an initramfs's help.
# 50-image.sh writes it into the partition table.
if [ "$PARTITION_TABLE" = dos ]; then
    DISK_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
    [ "$DISK_ID" != 00000000 ] || DISK_ID=5256410a
    ROOT_PARTUUID=$DISK_ID-02
fi

case $BOOTLOADER in
    raspi-firmware)
        [ "$PI_SOURCE" = raspberrypi ] && rpi_archive
        # Read by raspi-firmware's kernel hook, which writes cmdline.txt and config.txt from them.
        cat >"$ROOT/etc/default/raspi-firmware" <<EOF
# RVA image ($DESCRIPTION), from image-build/boards/$BOARD.conf. Read by raspi-firmware's hook on
# every kernel or initramfs update; it rewrites /boot/firmware/cmdline.txt and config.txt.
# The root partition by the card's disk identifier (set by image-build, as pi-gen does): found by
# the kernel itself, the same in the SD slot and in a USB reader.
ROOTPART=PARTUUID=$ROOT_PARTUUID
CONSOLES="$RASPI_CONSOLES"
${RASPI_CMA:+CMA=$RASPI_CMA}
EOF
        printf '%s\n' "$RASPI_CONFIG_CUSTOM" >"$ROOT/etc/default/raspi-firmware-custom"
        ;;
    systemd-boot)
        if [ "$AB" = 1 ]; then
            # Each slot's loader entry names its own root (root=PARTLABEL=rva-root-a, written by
            # /usr/lib/rva/ab/bootloader); both slots hold the same file system, so there is no
            # fstab line for / and the kernel mounts it read-write.
            cat >"$ROOT/etc/kernel/cmdline" <<EOF
rw rootwait net.ifnames=0 $KERNEL_CMDLINE
EOF
        else
            cat >"$ROOT/etc/kernel/cmdline" <<EOF
root=LABEL=$ROOT_LABEL ro rootwait net.ifnames=0 $KERNEL_CMDLINE
EOF
        fi
        ;;
    *) die "unknown BOOTLOADER=$BOOTLOADER in boards/$BOARD.conf" ;;
esac

board_packages=("${PACKAGES[@]}")
# --ab: RAUC and its D-Bus service (rauc install, rauc status); systemd-boot for
# systemd-bless-boot and its generator (its kernel hooks and postinst act only on an ESP that
# `bootctl is-installed` accepts, which this one, booted through EFI/BOOT/, is not).
[ "$AB" = 0 ] || board_packages+=(rauc rauc-service systemd-boot)
if [ -n "${BOARD_KERNEL_SUITE:-}" ]; then
    # The board needs a newer kernel than $SUITE has: $KERNEL_PACKAGE from $BOARD_KERNEL_SUITE
    # replaces the root filesystem's. The suite stays in the image's sources, so the kernel
    # keeps getting that suite's updates (apt upgrades packages installed from backports).
    cat >"$ROOT/etc/apt/sources.list.d/$BOARD_KERNEL_SUITE.list" <<EOF
# The kernel of this board comes from here (image-build/boards/$BOARD.conf).
deb $MIRROR $BOARD_KERNEL_SUITE $COMPONENTS
EOF
    mapfile -t old_kernels < <(in_root dpkg-query -W -f '${db:Status-Status} ${Package}\n' \
        'linux-image-[0-9]*' | awk '$1 == "installed" { print $2 }')
    board_packages+=("$KERNEL_PACKAGE/$BOARD_KERNEL_SUITE")
fi
board_apt() {
    in_root apt-get "$@" -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold >>"$WORK/board-apt.log" 2>&1 || {
        tail -n 40 "$WORK/board-apt.log" >&2
        die "apt-get $1 of the board packages failed"
    }
}
if [ -n "$KERNEL_OVERRIDE" ]; then
    # build --kernel: another kernel flavour of the same suite replaces the root's.
    mapfile -t old_kernels < <(in_root dpkg-query -W -f '${db:Status-Status} ${Package}\n' \
        'linux-image-*' | awk -v keep="$KERNEL_OVERRIDE" '$1 == "installed" && $2 != keep { print $2 }')
    board_packages+=("$KERNEL_OVERRIDE")
fi
log "installing ${board_packages[*]}"
in_root apt-get update -qq
board_apt install "${board_packages[@]}"
if [ ${#old_kernels[@]} -gt 0 ]; then
    log "removing ${old_kernels[*]} (replaced by the ${KERNEL_OVERRIDE:-${BOARD_KERNEL_SUITE:-$PI_SOURCE}} kernel)"
    board_apt purge "${old_kernels[@]}"
fi
if [ "$BOOTLOADER" = systemd-boot ]; then
    # The kernel is already installed: run the hook a kernel upgrade runs. On an A/B image it
    # writes slot A's entry (/usr/lib/rva/ab/bootloader install-kernel).
    in_root env RVA_IMAGE_BUILD=1 RVA_AB_SLOT=A /etc/kernel/postinst.d/zz-rva-esp
fi
if [ "$AB" = 1 ]; then
    # Slot A is the one to boot, and good: a flashed image is not on trial.
    ab_backend() { RVA_ESP=$ROOT$BOOT_DIR "$HERE/overlays/ab/usr/lib/rva/ab/bootloader" "$@"; }
    ab_backend set-primary A
    ab_backend set-state A good
    mkdir -p "$ROOT/etc/rauc"
    ab_system_conf "$BOARD" >"$ROOT/etc/rauc/system.conf"
    ab_signing "$CACHE/rauc-dev"
    install -m 0644 "$RAUC_KEYRING" "$ROOT/etc/rauc/keyring.pem"
    systemctl --root="$ROOT" --quiet enable rva-health-check.service
    log "A/B: $(ab_backend list | paste -sd' '), RAUC compatible $(ab_compatible "$BOARD")"
fi
if [ "$PI_SOURCE" = raspberrypi ]; then
    # Raspberry Pi's raspi-firmware copies kernel, initramfs, DTBs and overlays but, unlike
    # Debian's, writes neither config.txt nor cmdline.txt (Raspberry Pi OS's image builder does).
    printf '%s\n' "$RPI_CONFIG_TXT" >"$ROOT$BOOT_DIR/config.txt"
    printf '%s\n' "$RPI_CMDLINE" >"$ROOT$BOOT_DIR/cmdline.txt"
    # picamera2 and libcamera's bindings are the OS's (python3-picamera2): the venv sees them
    # behind its own packages (ansible's rva_app_venv_system_site_packages does the same on a
    # provisioned Raspberry Pi OS). Checked here, in the emulated root: both import beside the
    # venv's numpy and OpenCV.
    sed -i 's/^include-system-site-packages *=.*/include-system-site-packages = true/' "$ROOT/opt/rva/venv/pyvenv.cfg"
    in_root /opt/rva/venv/bin/python -c 'import numpy, cv2, libcamera, picamera2; print("picamera2", picamera2.__file__, "numpy", numpy.__version__)' \
        || die "picamera2 does not import in the venv"
    # From now on the archive key is the one raspberrypi-archive-keyring keeps current.
    keyring=$(in_root dpkg -L raspberrypi-archive-keyring | grep -E '^/usr/share/keyrings/raspberrypi-archive-keyring\.(pgp|gpg)$' | head -n1)
    [ -n "$keyring" ] && [ -f "$ROOT$keyring" ] || die "raspberrypi-archive-keyring installed no /usr/share/keyrings/raspberrypi-archive-keyring.{pgp,gpg}"
    python3 "$HERE/lib/keycheck.py" "$ROOT$keyring" "$RPI_ARCHIVE_KEY_FINGERPRINT" >&2 || die "$keyring (raspberrypi-archive-keyring): refused (above)"
    sed -i "s|^Signed-By: .*|Signed-By: $keyring|" "$ROOT/etc/apt/sources.list.d/raspi.sources"
    rm -f "$ROOT/etc/apt/keyrings/raspberrypi-archive.asc"
    check_rpi_boot_files
fi
[ -n "$(ls -A "$ROOT$BOOT_DIR")" ] || die "the board packages left $BOOT_DIR empty"
for dtb in ${DTBS[@]+"${DTBS[@]}"}; do
    [ -f "$ROOT$BOOT_DIR/$dtb" ] || die "$dtb (DTBS of boards/$BOARD.conf) is not in $BOOT_DIR"
done

# First-boot pieces from rootfs/ (units are enabled, never started).
copy_tree_files() {
    local rel
    for rel in "$@"; do
        install -D -m "$(stat -c %a "$REPO/rootfs/$rel")" -o root -g root "$REPO/rootfs/$rel" "$ROOT/$rel"
    done
}
# (Bytecode a test run left in the checkout stays out of the image.)
mapfile -t firstboot_files < <(cd "$REPO/rootfs" && find usr/lib/rva-firstboot -type f -not -path "*/__pycache__/*" && \
    find usr/lib/systemd/system -maxdepth 1 \( -name 'rva-firstboot*' -o -name 'rva-grow*' \
        -o -name 'rva-mdns-port*' \) -type f)
copy_tree_files "${firstboot_files[@]}"
systemctl --root="$ROOT" --quiet enable rva-firstboot.service rva-grow-root.service rva-mdns-port.path \
    systemd-networkd.service systemd-resolved.service ssh.service
# The D-Bus wpa_supplicant serves NetworkManager, which the image does not use: rva-firstboot
# starts wpa_supplicant@wlan0 when rva.toml names a Wi-Fi network.
systemctl --root="$ROOT" --quiet disable wpa_supplicant.service

for overlay in "${USER_OVERLAYS[@]}"; do
    log "overlay $overlay"
    copy_tree "$overlay"
done
in_root ldconfig

# Locked root password ("*": no password can match) and no other login: SSH keys only.
sed -i 's/^root:[^:]*:/root:*:/' "$ROOT/etc/shadow"

# rva.toml on the boot partition: the user's, or the board's default camera in the template.
if [ -n "$BOOT_CONFIG" ]; then
    install -m 0644 "$BOOT_CONFIG" "$ROOT$BOOT_DIR/rva.toml"
else
    sed "s|@CAMERA_SOURCE@|$CAMERA_SOURCE|" "$HERE/boot/rva.toml" >"$ROOT$BOOT_DIR/rva.toml"
fi
umount_root_fs
