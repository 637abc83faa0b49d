#!/usr/bin/env bash
# `make bench`: every benchmark of docs/BENCHMARKS.md, each against its reference in the same
# run. BENCH=name[,name...] picks some (similarity, preprocess, fetch, embed, report, cohort,
# decode; decode needs CONNECTOME_REFERENCE_PYTHON, which `make bench` sets).
# The full similarity sweep (NumPy up to N = 50 000, then FAISS at 50 000 x 512 and
# 100 000 x 768) takes hours on 2 busy cores; BENCH_QUICK=1 keeps every benchmark to a few
# minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
want=",${BENCH:-similarity,preprocess,fetch,embed,report,cohort,decode},"
run() { [[ "$want" == *",$1,"* ]] || return 0; echo; echo "=== bench: $1"; shift; "$@"; }

sim_sizes=() faiss_cases=()
[ -n "${BENCH_QUICK:-}" ] && sim_sizes=(--sizes 289,5000) faiss_cases=(--cases 5000x512)
run similarity /usr/bin/python3 scripts/bench/similarity_numpy.py "${sim_sizes[@]}"
run similarity scripts/bench/similarity-faiss.sh "${faiss_cases[@]}"
run preprocess scripts/bench/preprocess.sh
run fetch scripts/bench/fetch.sh
run embed go test ./stages/embed ./models/onnxrt -run '^$' -bench . -benchtime 20x -count 1
run report scripts/bench/report-render.sh
run cohort go test ./internal/sr -run '^$' -bench . -count 1
run decode go test ./internal/dicomio -run '^$' -bench ReadSliceCompressed -benchtime 30x -count 2
