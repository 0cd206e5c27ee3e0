#!/bin/sh
# apt-fetch.sh SUITE PACKAGE DEST
# Download one .deb from the given Debian suite through a private apt configuration (the host's
# own sources and state stay untouched) and unpack it into DEST with dpkg -x.
set -eu
suite=$1 pkg=$2 dest=$3
here=$(cd "$(dirname "$0")" && pwd)
mirror=$("$here/debian-mirror.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/preferences.d" "$dest"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$mirror" "$suite" >"$work/etc/sources.list"
set -- -o Dir::Etc::SourceList="$work/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::Etc::PreferencesParts="$work/etc/preferences.d" \
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root
apt-get "$@" -qq update
(cd "$work" && apt-get "$@" -qq download "$pkg")
dpkg -x "$work"/"$pkg"_*.deb "$dest"
