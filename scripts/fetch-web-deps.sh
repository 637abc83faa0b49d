#!/usr/bin/env bash
# Fetches the report's graph library from its npm package at a pinned version, checks its
# sha256, and installs the minified file under stages/report/assets/vendor/ (git-ignored),
# where the Go build embeds it into the binary; the report stage inlines it into
# report/index.html, so the page needs no network. Build after running this (make build does).
#
# Usage: scripts/fetch-web-deps.sh [DEST_DIR]   (default: <repo>/stages/report/assets/vendor)
# Needs: npm, tar, sha256sum (through scripts/npm-file.sh).
set -euo pipefail

ECHARTS_VERSION=6.1.0
ECHARTS_TGZ_SHA256=681aff88cc1038c3fa941a3a53d1b177a52250b05335efc607d6105ae13be481
ECHARTS_MIN_SHA256=b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$repo/stages/report/assets/vendor"}
out="$dest/echarts-$ECHARTS_VERSION.min.js"

# Licence and notice travel with the file (Apache-2.0 §4).
"$repo/scripts/npm-file.sh" echarts "$ECHARTS_VERSION" "$ECHARTS_TGZ_SHA256" package/dist/echarts.min.js "$ECHARTS_MIN_SHA256" "$out" \
	"package/LICENSE=$dest/echarts-$ECHARTS_VERSION.LICENSE" "package/NOTICE=$dest/echarts-$ECHARTS_VERSION.NOTICE"
