#!/usr/bin/env bash
# Fetch benchmarks, in one run: objects/s and MB/s through the real storage client against the
# in-process fake-gcs-server at 1, 8 and 32 objects in flight (with no added latency, and with
# 20 ms per request as a remote store's first byte), with the speed-up over concurrency 1; and
# the share of a synthetic 300-slice series (2.5 mm) that the stage fetches per lesion.
# FETCH_BENCH_COUNT sets the repetitions (3); the median is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${FETCH_BENCH_COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test ./internal/gcp -run '^$' -bench 'Download' -benchtime 2x -count "$count" -timeout 30m | tee -a "$out" | grep -E '^Benchmark' || true
go test ./stages/fetch -run '^$' -bench 'FetchStage' -benchtime 1x -count 1 -timeout 30m | tee -a "$out" | grep -E '^Benchmark' || true
echo
awk '
/^BenchmarkDownload/ {
	split($1, p, "/"); lat = p[2]; conc = p[3]; sub(/-[0-9]+$/, "", conc)
	for (i = 2; i <= NF; i++) { if ($(i+1) == "MB/s") mb[lat, conc] = mb[lat, conc] " " $i; if ($(i+1) == "objects/s") ob[lat, conc] = ob[lat, conc] " " $i }
	seen[lat] = 1
}
/^BenchmarkFetchStage/ {
	name = $1; sub(/^BenchmarkFetchStage\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 2; i <= NF; i++) { if ($(i+1) == "%series_bytes") pct[name] = $i; if ($(i+1) == "objects/lesion") opl[name] = $i }
	order[++n] = name
}
function median(s,   a, k, i, j, t) {
	k = split(s, a, " ")
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return a[int((k + 1) / 2)]
}
END {
	for (lat in seen) {
		base = median(ob[lat, "concurrency=1"])
		printf "download %s (median of runs):\n", lat
		split("1 8 32", cs, " ")
		for (i = 1; i <= 3; i++) {
			c = "concurrency=" cs[i]; o = median(ob[lat, c]); m = median(mb[lat, c])
			printf "  %-15s %8.1f objects/s %8.1f MB/s   x%.2f vs concurrency=1\n", c, o, m, o / base
		}
	}
	print "bytes fetched per lesion, 300-slice series at 2.5 mm (target < 25%):"
	for (i = 1; i <= n; i++) printf "  %-35s %6.2f%% of the series  (%s objects of 300)\n", order[i], pct[order[i]], opl[order[i]]
}' "$out"
