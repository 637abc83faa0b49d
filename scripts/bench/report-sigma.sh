#!/usr/bin/env bash
# Measures sigma.js + graphology (WebGL) against the report's ECharts large mode on the same
# precomputed 5 000-node map, in one run of headless chromium, and prints the ratio.
# Fetches both libraries with `npm pack` at pinned versions (sha256-checked) into a temp dir;
# they are used only here, never in the report.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
	cd "$work"
	npm pack --silent sigma@4.0.4 graphology@0.26.0 >/dev/null
	sha256sum -c --quiet <<SUMS
3fe380ff3d3ebdd60b35bd616be3e73e5308a3b2264cb7d3d7ad47bd06cdd80e  sigma-4.0.4.tgz
3c0cc63556e32b9d00ea953dce29790a5e49fc448f19247e25540156caef6b98  graphology-0.26.0.tgz
SUMS
	tar -xzf sigma-4.0.4.tgz --strip-components=2 package/dist/sigma.min.js
	tar -xzf graphology-0.26.0.tgz --strip-components=2 package/dist/graphology.umd.min.js
)
REPORT_SIGMA_DIR="$work" go test ./stages/report -run '^$' -bench 'SigmaVsECharts' -benchtime 1x -count 1 -v -timeout 20m \
	| grep -E 'nodes,|ratio|Benchmark|ok|FAIL|Error|error'
