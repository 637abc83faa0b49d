#!/usr/bin/env bash
# GPU check for the embed stage, for a machine with an NVIDIA GPU:
#   1. builds the ONNX Runtime test binaries (or uses ones built earlier with `build`),
#   2. runs the test encoders and the embed stage with the CUDA provider and compares them with
#      CPU (cosine >= 0.9999 per embedding),
#   3. prints a throughput table (patches/s) per model for batch sizes 1, 8 and 32, CPU and CUDA
#      measured in the same process.
#
# Usage:
#   scripts/gpu-check.sh build   on the build machine: compile the test binaries into
#                                bin/gpu-check/ (for a GPU machine without Go or internet)
#   scripts/gpu-check.sh [run]   on the GPU machine (builds first when Go is there)
#   scripts/gpu-check.sh encoders [DIR]
#                                the 9 encoder graphs of DIR (default weights-random, from
#                                `make models-random`): per model, CUDA patches/s at batch 1, 8
#                                and 32 with cudnn_conv_algo_search EXHAUSTIVE and HEURISTIC,
#                                CUDA vs CPU agreement, peak GPU memory; one table
#                                (scripts/bench/encoders.py --cuda). Installs onnxruntime-gpu
#                                1.29.0 with its CUDA 12 / cuDNN 9 wheels into a venv under
#                                ~/.cache/connectome (needs PyPI); stops after GPU_CHECK_BUDGET_S
#                                (default 450 s) so that the whole check stays under 8 minutes.
#
# ONNX Runtime with CUDA, in order of preference:
#   - $ONNXRUNTIME_LIB when set (e.g. from scripts/install-onnxruntime.sh --gpu);
#   - third_party/onnxruntime/libonnxruntime.so.1.29.0 when libonnxruntime_providers_cuda.so
#     lies beside it (scripts/install-onnxruntime.sh --cuda-npm: CUDA 13 provider from npm);
#   - otherwise, with internet: scripts/install-onnxruntime.sh --gpu.
# The provider also needs the CUDA runtime libraries and cuDNN 9 of the same CUDA major version
# on the loader path (LD_LIBRARY_PATH), e.g. from the pip wheels nvidia-cublas-cu13,
# nvidia-cuda-runtime-cu13, nvidia-curand-cu13 and nvidia-cudnn-cu13.
#
# Environment: CONNECTOME_CUDNN_ALGO=EXHAUSTIVE|HEURISTIC|DEFAULT (default EXHAUSTIVE),
# BENCHTIME (go test -benchtime, default 20x).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin="$repo/bin/gpu-check"
mode=${1:-run}

log() { echo "gpu-check: $*" >&2; }

build() {
	command -v go >/dev/null || { log "go is not installed; build on the build machine with: scripts/gpu-check.sh build"; exit 1; }
	mkdir -p "$bin"
	log "building test binaries into $bin"
	go test -c -o "$bin/onnxrt.test" ./models/onnxrt
	go test -c -o "$bin/embed.test" ./stages/embed
	go build -o "$bin/connectome" ./cmd/connectome || log "note: cmd/connectome did not build; the checks do not need it"
}

encoders() {
	dir=${1:-weights-random}
	[ -f "$dir/models.yaml" ] || { log "no $dir/models.yaml: run make models-random first (or pass an export directory)"; exit 1; }
	command -v nvidia-smi >/dev/null || { log "nvidia-smi not found: this does not look like a GPU machine"; exit 1; }
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu-check: GPU: /' >&2
	venv="$HOME/.cache/connectome/venv-gpu-check"
	if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, yaml' 2>/dev/null; then
		log "installing onnxruntime-gpu 1.29.0 (CUDA 12, cuDNN 9 wheels) into $venv"
		python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check 'onnxruntime-gpu[cuda,cudnn]==1.29.0' numpy==1.26.4 PyYAML==6.0.4
	fi
	timeout "${GPU_CHECK_BUDGET_S:-450}" "$venv/bin/python" "$repo/scripts/bench/encoders.py" --cuda --models-dir "$dir" --runs "${GPU_CHECK_RUNS:-10}"
}

case "$mode" in
encoders)
	encoders "${2:-}"
	exit 0
	;;
build)
	build
	exit 0
	;;
run) ;;
-h | --help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	exit 0
	;;
*)
	log "unknown mode $mode (build or run)"
	exit 2
	;;
esac

if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu-check: GPU: /' >&2
	gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
else
	log "nvidia-smi not found: this does not look like a GPU machine"
	exit 1
fi

if [ -z "${ONNXRUNTIME_LIB:-}" ]; then
	cpu_lib="$repo/third_party/onnxruntime/libonnxruntime.so.1.29.0"
	if [ -f "$cpu_lib" ] && [ -f "$(dirname "$cpu_lib")/libonnxruntime_providers_cuda.so" ]; then
		export ONNXRUNTIME_LIB="$cpu_lib"
	else
		log "no CUDA provider beside the CPU library; trying scripts/install-onnxruntime.sh --gpu (needs internet)"
		eval "$(scripts/install-onnxruntime.sh --gpu)"
	fi
fi
log "ONNXRUNTIME_LIB=$ONNXRUNTIME_LIB"
prov="$(dirname "$ONNXRUNTIME_LIB")/libonnxruntime_providers_cuda.so"
if [ -f "$prov" ] && ldd "$prov" | grep -q 'not found'; then
	log "the CUDA provider cannot find these libraries (add them to LD_LIBRARY_PATH):"
	ldd "$prov" | grep 'not found' >&2
	exit 1
fi

if command -v go >/dev/null; then
	build
fi
for t in onnxrt.test embed.test; do
	[ -x "$bin/$t" ] || { log "missing $bin/$t: run scripts/gpu-check.sh build first"; exit 1; }
done

export CONNECTOME_GPU_CHECK=1 CONNECTOME_HAVE_CUDA=1 CI=${CI:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log "CUDA vs CPU on the test encoders"
"$bin/onnxrt.test" -test.run 'TestGPUParity' -test.v -test.count=1 2>&1 | tee "$out/parity.txt" | grep -E 'GPU-PARITY|^(--- |ok|FAIL|PASS)' >&2
grep -q '^--- PASS: TestGPUParity' "$out/parity.txt" || { log "FAILED: CUDA vs CPU parity"; exit 1; }

log "embed stage with --device cuda vs cpu"
(cd "$repo/stages/embed" && "$bin/embed.test" -test.run 'TestGPUStage' -test.v -test.count=1) 2>&1 | tee "$out/stage.txt" | grep -E 'GPU-STAGE|^(--- |ok|FAIL|PASS)' >&2
grep -q '^--- PASS: TestGPUStage' "$out/stage.txt" || { log "FAILED: embed stage on CUDA"; exit 1; }

log "throughput (benchtime ${BENCHTIME:-20x}, cudnn_conv_algo_search ${CONNECTOME_CUDNN_ALGO:-EXHAUSTIVE})"
"$bin/onnxrt.test" -test.run 'XXX' -test.bench 'BenchmarkGPU' -test.benchtime "${BENCHTIME:-20x}" 2>&1 | tee "$out/bench.txt" >/dev/null
grep -q '^PASS' "$out/bench.txt" || { cat "$out/bench.txt" >&2; log "FAILED: benchmark"; exit 1; }

# BenchmarkGPU/<model>/<cpu|cuda>/batch=<n>-<procs>  <N>  <ns/op> ns/op  <x> patches/s
echo
echo "Embedding throughput, patches/s ($gpu; ONNX Runtime $(basename "$ONNXRUNTIME_LIB"); CPU and CUDA in the same process)"
echo
echo "| model | batch | CPU | CUDA | CUDA / CPU |"
echo "|---|---:|---:|---:|---:|"
awk '
/^BenchmarkGPU\// {
	split($1, p, "/"); model = p[2]; prov = p[3]; b = p[4]; sub(/^batch=/, "", b); sub(/-[0-9]+$/, "", b)
	for (i = 2; i <= NF; i++) if ($(i) == "patches/s") v = $(i - 1)
	key = model SUBSEP b; rate[key, prov] = v
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
}
END {
	for (i = 1; i <= n; i++) {
		split(order[i], k, SUBSEP); c = rate[order[i], "cpu"]; g = rate[order[i], "cuda"]
		printf "| %s | %s | %.1f | %.1f | %.1f× |\n", k[1], k[2], c, g, (c > 0 ? g / c : 0)
	}
}' "$out/bench.txt"
log "all GPU checks passed"
