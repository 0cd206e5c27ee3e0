# 60 publish: the image, its compressed form, their SHA-256 sums and the manifest (what is inside:
# packages and versions, Python packages, models, partitions, boot files, build timings) in $OUT.

rm -f "$OUT/$NAME".*
mv "$IMG" "$OUT/$NAME.img"
case $COMPRESS in
    zstd) zstd -q -T0 "-${RVA_ZSTD_LEVEL:-12}" "$OUT/$NAME.img" -o "$OUT/$NAME.img.zst"; COMPRESSED=$NAME.img.zst ;;
    xz) xz -T0 -k -6 "$OUT/$NAME.img"; COMPRESSED=$NAME.img.xz ;;
    none) COMPRESSED="" ;;
esac
# --ab: the update bundle of the same root (50-image.sh made it) is summed with the image.
BUNDLE_FILE=""
[ "$AB" = 0 ] || BUNDLE_FILE=rva-$BOARD-$VERSION.raucb
(cd "$OUT" && sha256sum "$NAME.img" ${COMPRESSED:+"$COMPRESSED"} ${BUNDLE_FILE:+"$BUNDLE_FILE"} >"$NAME.sha256")
python3 "$HERE/lib/manifest.py" --root "$ROOT" --boot "$WORK/boot" --image "$OUT/$NAME.img" \
    --sums "$OUT/$NAME.sha256" --board "$BOARD" --description "$DESCRIPTION" --version "$VERSION" \
    --suite "$SUITE" --arch "$ARCH" --boot-dir "$BOOT_DIR" --vars "$WORK/ansible/vars.json" \
    --pi-source "$PI_SOURCE" \
    --timings "${TIMINGS[@]}" "60-publish=$((SECONDS - ${STEP_START:-$SECONDS}))" \
    --root-filesystems "base=$(basename "$BASE_TAR")" "provisioned=$PROVISIONED_FROM" \
    >"$OUT/$NAME.manifest.json"
log "$NAME.img $(du -h --apparent-size "$OUT/$NAME.img" | cut -f1)${COMPRESSED:+, $COMPRESSED $(du -h "$OUT/$COMPRESSED" | cut -f1)}"
