#!/usr/bin/env bash
# Installs one file of an npm package at a pinned version: `npm pack` (which runs no package
# scripts), the tarball's sha256 and the file's sha256 checked, files that travel with it
# (licence, notice) copied beside it, and the file renamed into place last, so a half-written
# file is never taken for the real one. Does nothing when OUT is already there with its sha256.
# The fetch-*.sh scripts call it with their pins.
#
# Usage: scripts/npm-file.sh PACKAGE VERSION TGZ_SHA256 MEMBER MEMBER_SHA256 OUT [EXTRA=DEST ...]
#   MEMBER and EXTRA are paths inside the tarball (package/...); DEST is where EXTRA goes.
# Needs: npm, tar, sha256sum.
set -euo pipefail
pkg=$1 version=$2 tgz_sha=$3 member=$4 member_sha=$5 out=$6
shift 6

if [ -f "$out" ] && echo "$member_sha  $out" | sha256sum -c --status; then
	echo "ok: $out ($pkg $version, already present, sha256 verified)"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg@$version" >/dev/null)
tgz="$work/$pkg-$version.tgz"
echo "$tgz_sha  $tgz" | sha256sum -c --quiet \
	|| { echo "$pkg $version tarball sha256 mismatch" >&2; exit 1; }
extras=()
for e in "$@"; do extras+=("${e%%=*}"); done
tar -xzf "$tgz" -C "$work" "$member" "${extras[@]}"
echo "$member_sha  $work/$member" | sha256sum -c --quiet \
	|| { echo "$pkg $version: $member sha256 mismatch" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
for e in "$@"; do
	cp "$work/${e%%=*}" "${e#*=}"
done
cp "$work/$member" "$out.tmp"
mv "$out.tmp" "$out"
echo "ok: $out ($pkg $version, $(wc -c <"$out") bytes, sha256 $member_sha)"
