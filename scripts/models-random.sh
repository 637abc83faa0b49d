#!/usr/bin/env bash
# Export the 9 encoders with random weights (scripts/export_models.py --random-weights) into OUT,
# then check them with `connectome models verify`. Skips the export when OUT already holds an
# export of the same inputs (export code, pinned environment, configs/models.yaml, seed): the
# hash of those is kept in OUT/.inputs.sha256.
#
# Usage: scripts/models-random.sh PYTHON OUT SEED THREADS CONNECTOME_BINARY
set -euo pipefail
py=$1 out=$2 seed=$3 threads=$4 bin=$5
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

inputs=$( (cat scripts/requirements-export.txt scripts/export_models.py scripts/export/*.py configs/models.yaml; echo "seed $seed") | sha256sum | cut -c1-64)
if [ -f "$out/.inputs.sha256" ] && [ "$(cat "$out/.inputs.sha256")" = "$inputs" ] && [ -f "$out/models.yaml" ]; then
	echo "models-random: $out is up to date (inputs $inputs)"
else
	mkdir -p "$out"
	rm -f "$out/.inputs.sha256"
	start=$(date +%s)
	"$py" scripts/export_models.py --random-weights "$seed" --out "$out" --threads "$threads" --report "$out/export-report.json"
	echo "models-random: exported in $(($(date +%s) - start)) s, $(du -sh "$out" | cut -f1) in $out"
	echo "$inputs" >"$out/.inputs.sha256"
fi
"$bin" models verify --models-file "$out/models.yaml" --models-dir "$out" --threads "$threads"
