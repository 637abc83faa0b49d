#!/usr/bin/env bash
# Preprocess benchmark (issue 4): one lesion, all 9 configurations, from a 512×512×300 series on
# disk: connectome's crop-only Go path vs the whole-volume Go path vs patchref.py (local and
# whole-volume), in the same run. Needs Debian's python3-numpy and python3-pydicom, and
# ../shared/tools/patchref.py. The series (~150 MiB) is cached in $PREPROCESS_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test ./stages/preprocess -run '^$' -bench ExtractInMemory -benchtime 40x -count 1 | grep -E 'Benchmark|ok'
exec /usr/bin/python3 scripts/bench/preprocess.py --dir "${PREPROCESS_BENCH_DIR:-/tmp/connectome-bench-ct512}" "$@"
