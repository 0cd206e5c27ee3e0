#!/bin/sh
# mmdebstrap setup hook ($1: the root): before any package is unpacked, tell dpkg to leave out
# documentation, man pages and translations. The file stays in the image, so packages installed
# later (by ansible, by the user) stay small too. Licence files are kept.
set -eu
mkdir -p "$1/etc/dpkg/dpkg.cfg.d"
cat >"$1/etc/dpkg/dpkg.cfg.d/rva-nodoc" <<'CFG'
# RVA images: no documentation (licences kept). Delete this file to get docs with new packages.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/groff/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
