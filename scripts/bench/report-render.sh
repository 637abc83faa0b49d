#!/usr/bin/env bash
# Times the report page at 5 000 nodes × 9 models in headless chromium, in one run, against two
# references: the page before issue 17's views (the gallery, compare view, keyboard use,
# pictures; git revision BASE_REV, default below), same data, same large mode; and ECharts'
# graph series (as the published page draws). Prints every set of timings and the ratios.
# Needs: chromium, the graph library (make deps), git. REPORT_BENCH_NODES sets the size (5000).
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_REV=${BASE_REV:-5d7c939}
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
for f in page.html.tmpl page.css app.js; do
	git show "$BASE_REV:stages/report/assets/$f" >"$base/$f"
done
REPORT_BENCH_BASE=$base go test ./stages/report -run '^$' -bench 'RenderModes' -benchtime 1x -count 1 -v -timeout 30m \
	| grep -E 'nodes,|ratio|Benchmark|ok|FAIL'
