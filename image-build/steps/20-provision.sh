# 20 provision: ansible/site.yml applied into the root filesystem through the chroot connection,
# exactly as on a device, with provision.yml + --var. Cached per architecture and inputs (the base
# tarball, the playbook, rootfs/, the package sources, the variables and files they name), so
# boards of one architecture share one provisioned root.

PLAYBOOK_BIN=$(command -v ansible-playbook || echo "$REPO/.venv/bin/ansible-playbook")
[ -x "$PLAYBOOK_BIN" ] || die "ansible-playbook not found (make venv; pip install -r ansible/requirements-dev.txt)"

mkdir -p "$WORK/ansible"
python3 - "$WORK/ansible/vars.json" "${ANSIBLE_VARS[@]}" <<'PY'
import json, sys
out, pairs = sys.argv[1], sys.argv[2:]
extra = {}
for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep:
        sys.exit(f"--var {pair}: expected KEY=VALUE")
    try:
        extra[key] = json.loads(value)
    except json.JSONDecodeError:
        extra[key] = value
json.dump(extra, open(out, "w"), indent=2, sort_keys=True)
PY
# Files the variables point at (a Redis module, a video) are inputs too.
named_files=()
for pair in "${ANSIBLE_VARS[@]}"; do
    value=${pair#*=}
    [ -f "$value" ] && named_files+=("$(realpath "$value")")
done
mapfile -t provision_inputs < <(source_files "$REPO/ansible/site.yml" "$REPO/ansible/ansible.cfg" \
    "$REPO/ansible/roles" "$REPO/rootfs" "$REPO/rva" \
    | grep -v -e /rva-firstboot -e /rva-grow -e /rva-mdns-port)
# The variables go in as text: the work directory's path differs on every build.
PROVISION_KEY=$(cache_key "$BASE_KEY" "$(cat "$WORK/ansible/vars.json")" -- "$HERE/provision.yml" \
    "$HERE/steps/20-provision.sh" "$REPO/pyproject.toml" "${provision_inputs[@]}" "${named_files[@]}")
PROVISION_TAR=$CACHE/provisioned-$SUITE-$ARCH-$PROVISION_KEY.tar.zst
PROVISIONED_FROM=$(basename "$PROVISION_TAR")

given_root_var=RVA_IMAGE_PROVISIONED_${ARCH^^}
if [ -n "${!given_root_var:-}" ]; then
    # Developers working on the board steps (RVA_IMAGE_PROVISIONED_ARM64=file.tar.zst): a
    # provisioned root of this architecture taken as it is. The playbook is not applied, so
    # never for images that leave the machine.
    log "using $given_root_var=${!given_root_var} as the provisioned root"
    unpack_root "${!given_root_var}" "$ROOT"
    PROVISIONED_FROM="$given_root_var=${!given_root_var}"
elif [ -f "$PROVISION_TAR" ]; then
    log "cached: $(basename "$PROVISION_TAR")"
    unpack_root "$PROVISION_TAR" "$ROOT"
else
    log "provisioning $(basename "$PROVISION_TAR")"
    unpack_root "$BASE_TAR" "$ROOT"
    # The chroot resolves names (apt, pip, model downloads) through the build host's resolver.
    rm -f "$ROOT/etc/resolv.conf"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # pip and the model download inside the chroot use the controller's environment, whose
    # PIP_CERT/SSL_CERT_FILE name /etc/ssl/certs/ca-certificates.crt: lend the build host's bundle
    # (it may trust a TLS-inspecting proxy) for the playbook, and put the image's own back after.
    image_bundle=$ROOT/etc/ssl/certs/ca-certificates.crt
    cp -a "$image_bundle" "$WORK/ca-certificates.crt.image"
    cp /etc/ssl/certs/ca-certificates.crt "$image_bundle"
    cat >"$WORK/ansible/inventory.ini" <<INV
[rva]
rva-image ansible_host=$ROOT ansible_connection=community.general.chroot ansible_become=false ansible_python_interpreter=/usr/bin/python3
INV
    log "ansible-playbook site.yml into the $ARCH root ($(tr -d '\n ' <"$WORK/ansible/vars.json"))"
    # Pipelining (ansible.cfg sets it for ssh only) sends each module through the chroot's stdin:
    # no temporary files, three fewer commands per task, each an emulated process for arm64.
    # stdin is /dev/null: ansible refuses to start on a non-blocking stdin, which is what a
    # terminal shared with a running ssh client (ssh sets O_NONBLOCK) looks like.
    ANSIBLE_CONFIG="$REPO/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_PIPELINING=1 \
        ANSIBLE_LOCAL_TEMP="$WORK/ansible/tmp" ANSIBLE_REMOTE_TEMP=/tmp/.ansible \
        TMPDIR="$WORK/ansible" PATH="$(dirname "$PLAYBOOK_BIN"):$PATH" \
        "$PLAYBOOK_BIN" -i "$WORK/ansible/inventory.ini" -e "@$HERE/provision.yml" \
        -e "@$WORK/ansible/vars.json" "$REPO/ansible/site.yml" </dev/null >"$WORK/ansible/apply.log" 2>&1 || {
        tail -n 60 "$WORK/ansible/apply.log" >&2
        cp "$WORK/ansible/apply.log" "$OUT/$NAME.ansible.log"
        die "ansible-playbook failed (whole log: $OUT/$NAME.ansible.log)"
    }
    grep -A3 '^PLAY RECAP' "$WORK/ansible/apply.log" | tail -n +2 | sed 's/^/  /' >&2 || true
    cp -a "$WORK/ca-certificates.crt.image" "$image_bundle"
    pack_root "$ROOT" "$PROVISION_TAR"
fi
