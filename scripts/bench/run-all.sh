#!/usr/bin/env bash
# `make bench`: every benchmark of docs/BENCHMARKS.md, each against its reference in the same
# run. BENCH=name[,name...] picks some (similarity, preprocess, fetch, embed, report, cohort).
# The full similarity sweep (N up to 50 000) takes ~45 min; BENCH_QUICK=1 keeps every
# benchmark to a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
want=",${BENCH:-similarity,preprocess,fetch,embed,report,cohort},"
run() { [[ "$want" == *",$1,"* ]] || return 0; echo; echo "=== bench: $1"; shift; "$@"; }

sim_sizes=()
[ -n "${BENCH_QUICK:-}" ] && sim_sizes=(--sizes 289,5000)
run similarity /usr/bin/python3 scripts/bench/similarity_numpy.py "${sim_sizes[@]}"
run preprocess scripts/bench/preprocess.sh
run fetch scripts/bench/fetch.sh
run embed go test ./stages/embed ./models/onnxrt -run '^$' -bench . -benchtime 20x -count 1
run report scripts/bench/report-render.sh
run cohort go test ./sr -run '^$' -bench . -count 1
