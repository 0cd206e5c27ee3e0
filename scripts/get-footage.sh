#!/bin/sh
# Put the sample footage into $RVA_CACHE/footage: OpenCV's vtest.avi (768x576, 10 fps,
# 795 frames of people walking; Apache-2.0/BSD per Debian's copyright file), taken from
# Debian's opencv-doc package. Never committed; re-running is a no-op once verified.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RVA_CACHE:-$here/../.cache}
dest=$cache/footage
sha=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
if [ -f "$dest/vtest.avi" ] && echo "$sha  $dest/vtest.avi" | sha256sum -c --quiet 2>/dev/null; then
    exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/apt-fetch.sh" bookworm opencv-doc "$tmp/x"
cp "$tmp/x/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$dest/vtest.avi.part"
echo "$sha  $dest/vtest.avi.part" | sha256sum -c --quiet
mv "$dest/vtest.avi.part" "$dest/vtest.avi"
echo "footage: $dest/vtest.avi"
