#!/bin/sh
# Print the Debian archive URI this machine's apt already uses, so that build and test
# scripts reach the same mirror without hard-coding one. Override with RVA_DEBIAN_MIRROR.
set -eu
if [ -n "${RVA_DEBIAN_MIRROR:-}" ]; then echo "$RVA_DEBIAN_MIRROR"; exit 0; fi
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: the first URIs line of a stanza whose suites are not "-security".
    awk '/^URIs:/ {uri=$2} /^Suites:/ {if ($0 !~ /-security/ && uri != "") {print uri; exit}}' "$f"
done | head -n1 | grep . && exit 0
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" && $3 !~ /-security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f"
done | head -n1 | grep . && exit 0
echo "debian-mirror: no Debian archive found in /etc/apt; set RVA_DEBIAN_MIRROR" >&2
exit 1
