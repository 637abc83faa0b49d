#!/usr/bin/env bash
# Fetches the report's graph library from its npm package at a pinned version, checks its
# sha256, and installs the minified file under third_party/web/ (git-ignored). The report
# stage inlines that file into report/index.html, so the page needs no network.
#
# Usage: scripts/fetch-web-deps.sh [DEST_DIR]   (default: <repo>/third_party/web)
# Needs: npm (only `npm pack`, which runs no package scripts), tar, sha256sum.
set -euo pipefail

ECHARTS_VERSION=6.1.0
ECHARTS_TGZ_SHA256=681aff88cc1038c3fa941a3a53d1b177a52250b05335efc607d6105ae13be481
ECHARTS_MIN_SHA256=b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$repo/third_party/web"}
out="$dest/echarts-$ECHARTS_VERSION.min.js"

if [ -f "$out" ] && echo "$ECHARTS_MIN_SHA256  $out" | sha256sum -c --status; then
	echo "ok: $out (already present, sha256 verified)"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "echarts@$ECHARTS_VERSION" >/dev/null)
tgz="$work/echarts-$ECHARTS_VERSION.tgz"
echo "$ECHARTS_TGZ_SHA256  $tgz" | sha256sum -c --quiet \
	|| { echo "echarts tarball sha256 mismatch" >&2; exit 1; }
tar -xzf "$tgz" -C "$work" package/dist/echarts.min.js package/LICENSE package/NOTICE
echo "$ECHARTS_MIN_SHA256  $work/package/dist/echarts.min.js" | sha256sum -c --quiet \
	|| { echo "echarts.min.js sha256 mismatch" >&2; exit 1; }

mkdir -p "$dest"
# Licence and notice travel with the file (Apache-2.0 §4).
cp "$work/package/LICENSE" "$dest/echarts-$ECHARTS_VERSION.LICENSE"
cp "$work/package/NOTICE" "$dest/echarts-$ECHARTS_VERSION.NOTICE"
# Rename into place last so that a half-written file is never taken for the library.
cp "$work/package/dist/echarts.min.js" "$out.tmp"
mv "$out.tmp" "$out"
echo "ok: $out ($(wc -c <"$out") bytes, sha256 $ECHARTS_MIN_SHA256)"
