#!/usr/bin/env bash
# Compares the report page's two ways of drawing a big map in headless chromium, in one run:
# ECharts' graph series (as the published page) and the page's large mode (batched edges,
# scatter nodes). Prints both sets of timings and the ratios graph ÷ large.
# Needs: chromium, third_party/web (make deps). REPORT_BENCH_NODES sets the size (5000).
set -euo pipefail
cd "$(dirname "$0")/../.."
go test ./stages/report -run '^$' -bench 'RenderModes' -benchtime 1x -count 1 -v -timeout 20m \
	| grep -E 'nodes,|ratio|Benchmark|ok|FAIL'
