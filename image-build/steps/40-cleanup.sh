# 40 cleanup: nothing that is a cache, a log, a build leftover or a secret of the build machine
# ships, and nothing that must be unique to a device: SSH host keys (made by rva-firstboot), the
# machine id (made by systemd: an "uninitialized" one makes the first boot a first boot), the
# random seed. The Redis passwords stay for rva-firstboot to replace.

rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old \
    "$ROOT"/root/.cache "$ROOT"/root/.ansible "$ROOT"/tmp/.ansible \
    "$ROOT"/var/cache/man "$ROOT"/var/lib/rva-firstboot
find "$ROOT/tmp" "$ROOT/var/tmp" -mindepth 1 -delete
find "$ROOT/var/log" -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find "$ROOT/var/log" -type f -exec truncate -s 0 {} +
rm -rf "$ROOT"/var/log/journal/*
# Debian's pip in the venv keeps no cache (PIP_NO_CACHE_DIR in ansible); byte code stays, so the
# services start without writing to the card.
rm -f "$ROOT"/etc/ssh/ssh_host_*
printf 'uninitialized\n' >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/systemd/random-seed" "$ROOT/var/lib/systemd/credential.secret"
[ -L "$ROOT/var/lib/dbus/machine-id" ] || rm -f "$ROOT/var/lib/dbus/machine-id"
# Names resolve through systemd-resolved on the device.
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
# Documentation that came before dpkg's exclusions (hooks/setup10-no-docs.sh) or outside dpkg.
find "$ROOT/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$ROOT/usr/share/man" "$ROOT/usr/share/info" -mindepth 1 -delete 2>/dev/null || true
