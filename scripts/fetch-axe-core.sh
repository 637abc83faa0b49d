#!/usr/bin/env bash
# Fetches axe-core, the accessibility checker the report's browser tests inject into the page
# (stages/report: TestPageAccessibility), from its npm package at a pinned version, checks its
# sha256, and installs axe.min.js and its licence under third_party/web/axe-core/
# (git-ignored). Only the tests use it: it is never part of the page or the binary.
#
# Usage: scripts/fetch-axe-core.sh [DEST_DIR]   (default: <repo>/third_party/web/axe-core)
# Needs: npm, tar, sha256sum (through scripts/npm-file.sh).
set -euo pipefail

AXE_VERSION=4.14.1
AXE_TGZ_SHA256=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
AXE_MIN_SHA256=29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$repo/third_party/web/axe-core"}
out="$dest/axe.min.js"

mkdir -p "$dest"
echo "$AXE_VERSION" >"$dest/VERSION"
"$repo/scripts/npm-file.sh" axe-core "$AXE_VERSION" "$AXE_TGZ_SHA256" package/axe.min.js "$AXE_MIN_SHA256" "$out" \
	"package/LICENSE=$dest/LICENSE"
