# Helpers shared by image-build/build and its steps (sourced, not run).

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${STEP:-build}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cache_key STRING... -- FILE...: a short hash of the strings and of the files' contents (file
# names relative to the repository, so the key does not depend on where the checkout lives).
cache_key() {
    {
        while [ $# -gt 0 ] && [ "$1" != -- ]; do printf '%s\n' "$1"; shift; done
        [ $# -gt 0 ] && shift
        local f
        for f in "$@"; do
            printf '%s %s\n' "${f#"$REPO"/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -c1-16
}

# source_files DIR...: the files under the directories, sorted, without caches and byte code.
source_files() {
    find "$@" -type f ! -path '*/__pycache__/*' ! -path '*/.ansible/*' ! -name '*.pyc' \
        ! -path '*/.pytest_cache/*' ! -path '*.egg-info/*' | LC_ALL=C sort
}

# Root filesystem tarballs: zstd keeps the cache small and is fast on two cores. Older tarballs
# of the same kind (same name up to the key) are pruned: the newest two stay.
pack_root() {
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$1" -I 'zstd -T0 -3 -q' -cf "$2.part" . && mv "$2.part" "$2"
    prune_cache "$2"
}
prune_cache() {
    local kind=${1%-*}
    # shellcheck disable=SC2010,SC2012 # names are ours: <kind>-<hex key>.tar.zst
    ls -1t "$kind"-*.tar.zst 2>/dev/null | grep -v '\.part\.' | tail -n +3 | xargs -r rm -f
}
unpack_root() { mkdir -p "$2" && tar --numeric-owner --xattrs --xattrs-include='*' -I 'zstd -q' -xpf "$1" -C "$2"; }

# Mount what package scripts in the root expect (raspi-firmware's hook needs /proc: `ischroot`).
MOUNTED=()
mount_root_fs() {
    local root=$1 m
    for m in proc sys dev dev/pts; do mkdir -p "$root/$m"; done
    mount -t proc proc "$root/proc" && MOUNTED+=("$root/proc")
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" && MOUNTED+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTED+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && MOUNTED+=("$root/dev/pts")
}
umount_root_fs() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -R "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true; done
    MOUNTED=()
}

in_root() { chroot "$ROOT" /usr/bin/env -i ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }

# timed NAME COMMAND...: run and record the seconds it took in $TIMINGS (for the manifest).
timed() {
    local name=$1 start=$SECONDS
    STEP_START=$SECONDS
    shift
    "$@"
    TIMINGS+=("$name=$((SECONDS - start))")
    log "$name: $((SECONDS - start)) s"
}
