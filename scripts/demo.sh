#!/usr/bin/env bash
# The offline demo (`make demo`, after `make deps build`): builds cmd/connectome-demo and runs
# it. It generates a synthetic NLST-like cohort (cached under runs/demo-cohort), serves it from
# an in-process BigQuery emulator and fake Cloud Storage, and runs the real pipeline on CPU into
# runs/demo; the last line printed is the report to open. A second run resumes and returns in
# seconds. Extra arguments go to the demo command (e.g. --patients 12, --resume=false).
#
# The demo binary is separate from bin/connectome because the BigQuery emulator adds about
# 270 MB and minutes of build; its first build is the slow part of a cold `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=bin/connectome-demo

echo "demo: building $BIN (the first build compiles the BigQuery emulator: a few minutes)"
t0=$(date +%s)
"$GO" build -o "$BIN" ./cmd/connectome-demo
echo "demo: built in $(( $(date +%s) - t0 )) s"

if [[ -z "${ONNXRUNTIME_LIB:-}" ]]; then
	lib=$(ls third_party/onnxruntime/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
	if [[ -n "$lib" ]]; then
		export ONNXRUNTIME_LIB="$PWD/$lib"
	fi
fi

exec "$BIN" "$@"
