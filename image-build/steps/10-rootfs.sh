# 10 rootfs: the Debian root filesystem of this architecture, from mmdebstrap --variant=apt
# (Essential + apt + base.conf + the kernel), cached as a tarball keyed by everything it is made of.
# hooks/ runs inside mmdebstrap: setup* before the first package (no docs), essential* before the
# kernel is installed (small initramfs).

BASE_KEY=$(cache_key "$SUITE" "$ARCH" "$COMPONENTS" "${BASE_PACKAGES[*]}" "$KERNEL_PACKAGE" \
    "${INITRAMFS_MODULES[*]}" -- "$HERE/steps/10-rootfs.sh" "$HERE"/hooks/*)
BASE_TAR=$CACHE/rootfs-$SUITE-$ARCH-$BASE_KEY.tar.zst

if [ -f "$BASE_TAR" ]; then
    log "cached: $(basename "$BASE_TAR")"
else
    log "mmdebstrap $SUITE $ARCH (${#BASE_PACKAGES[@]} packages + $KERNEL_PACKAGE) from $MIRROR"
    RVA_INITRAMFS_MODULES="${INITRAMFS_MODULES[*]}" \
        mmdebstrap --mode=root --variant=apt --architectures="$ARCH" \
        --include="$(IFS=,; echo "${BASE_PACKAGES[*]},$KERNEL_PACKAGE")" \
        --aptopt='Acquire::Retries "3"' \
        --hook-directory="$HERE/hooks" \
        "$SUITE" "${BASE_TAR%.tar.zst}.part.tar.zst" \
        "deb $MIRROR $SUITE $COMPONENTS" \
        "deb $MIRROR $SUITE-updates $COMPONENTS" \
        "deb $SECURITY_MIRROR $SUITE-security $COMPONENTS"
    mv "${BASE_TAR%.tar.zst}.part.tar.zst" "$BASE_TAR"
    prune_cache "$BASE_TAR"
fi
