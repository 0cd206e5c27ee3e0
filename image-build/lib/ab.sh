# A/B images (build --ab) and their RAUC update bundles: what image-build/build and
# image-build/bundle share (sourced, not run). See docs/updates.md.

# The compatible string of a board: RAUC refuses a bundle made for another.
ab_compatible() { echo "rva-$1"; }

# ab_system_conf BOARD: /etc/rauc/system.conf of the board's A/B image.
ab_system_conf() {
    sed "s/@COMPATIBLE@/$(ab_compatible "$1")/" "$HERE/ab/system.conf.in"
}

# ab_signing: RAUC_CERT, RAUC_KEY and RAUC_KEYRING for bundles and images. Production keys come
# from the environment (RVA_RAUC_CERT, RVA_RAUC_KEY: the signing certificate and its key;
# RVA_RAUC_KEYRING: the CA certificates a device accepts); without them a development CA and
# signing key are made once in $1 (an ignored cache, never in the repository) and a warning
# says that the result is for development only.
ab_signing() {
    local dir=$1
    if [ -n "${RVA_RAUC_CERT:-}${RVA_RAUC_KEY:-}${RVA_RAUC_KEYRING:-}" ]; then
        local var
        for var in RVA_RAUC_CERT RVA_RAUC_KEY RVA_RAUC_KEYRING; do
            [ -n "${!var:-}" ] || die "$var is not set (set RVA_RAUC_CERT, RVA_RAUC_KEY and RVA_RAUC_KEYRING together, or none for development keys)"
            [ -r "${!var}" ] || die "$var=${!var}: no such file"
        done
        RAUC_CERT=$RVA_RAUC_CERT RAUC_KEY=$RVA_RAUC_KEY RAUC_KEYRING=$RVA_RAUC_KEYRING
        return
    fi
    if [ ! -f "$dir/signing.pem" ]; then
        mkdir -p "$dir"
        chmod 700 "$dir"
        log "development signing keys (not for devices in the field) in $dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/O=RVA development/CN=RVA development CA" \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=RVA development/CN=RVA development signing" \
            -keyout "$dir/signing.key" -out "$dir/signing.csr" 2>/dev/null
        openssl x509 -req -in "$dir/signing.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 3650 -out "$dir/signing.pem.part" 2>/dev/null
        mv "$dir/signing.pem.part" "$dir/signing.pem"
    fi
    log "warning: signed with the development key in $dir (RVA_RAUC_CERT, RVA_RAUC_KEY, RVA_RAUC_KEYRING for production)"
    RAUC_CERT=$dir/signing.pem RAUC_KEY=$dir/signing.key RAUC_KEYRING=$dir/ca.pem
}
