#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that connectome loads through onnxruntime_go.
#
#   scripts/install-onnxruntime.sh            CPU library (what `make deps` and CI use)
#   scripts/install-onnxruntime.sh --gpu      GPU build for this machine's CUDA major version
#   scripts/install-onnxruntime.sh --cuda-npm CUDA 13 provider from npm, beside the CPU library
#   scripts/install-onnxruntime.sh --help
#
# CPU: the library comes from the npm package onnxruntime-node (toolchain.md §2a). `npm pack`
# downloads the tarball and runs no package scripts (the postinstall would reach for NuGet), and
# only bin/napi-v6/linux/x64/libonnxruntime.so.1 is extracted. No GitHub, no PyPI.
#
# GPU (a GPU VM with internet): the official GitHub release build of the SAME ORT version
# (the core library and the CUDA provider must match exactly), picked for the CUDA major version
# that nvidia-smi / libcudart report, and checked against the sha256 digest GitHub publishes for
# the release asset (or ORT_GPU_SHA256 when set).
#
# CUDA 13 without GitHub (--cuda-npm, works from the build machines): the npm Unity package
# com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 (toolchain.md §2a) ships
# Plugins/Linux/x64/libonnxruntime_providers_{cuda,shared}.so built from ORT 1.29.0 for CUDA 13
# (MIT). Copied beside the CPU libonnxruntime.so.1.29.0, ONNX Runtime finds them there; the GPU
# host then needs the CUDA 13 runtime (libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10)
# and cuDNN 9 on its loader path. The folder can be carried to a GPU machine without internet.
#
# The script is idempotent: a present, verified library is kept. It ends by printing the
# ONNXRUNTIME_LIB value to export (an absolute path; the Go code also finds the CPU default).
set -euo pipefail

ORT_VERSION=1.29.0
CPU_SHA256=89688f5cf51c7e31befbb7b9101bc027799009b18d1baa9a5b1146a72e69538d
UNITY_PKG=com.github.asus4.onnxruntime.linux-x64-gpu
UNITY_VERSION=0.4.9
UNITY_TGZ_SHA256=2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412
CUDA_PROVIDER_SHA256=56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037
SHARED_PROVIDER_SHA256=c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772

repo=$(cd "$(dirname "$0")/.." && pwd)
dest="$repo/third_party/onnxruntime"

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

log() { echo "install-onnxruntime: $*" >&2; }

sha_ok() { # file sha256
	[ -f "$1" ] && echo "$2  $1" | sha256sum -c --status
}

install_cpu() {
	local out="$dest/libonnxruntime.so.$ORT_VERSION"
	if sha_ok "$out" "$CPU_SHA256"; then
		log "ok: $out already present (sha256 verified)"
	else
		command -v npm >/dev/null || { log "npm is needed (apt-get install -y --no-install-recommends npm)"; exit 1; }
		local work
		work=$(mktemp -d)
		trap 'rm -rf "$work"' RETURN
		log "npm pack onnxruntime-node@$ORT_VERSION (about 110 MB, no package scripts run)"
		(cd "$work" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
		log "extract package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
		tar -xzf "$work/onnxruntime-node-$ORT_VERSION.tgz" -C "$work" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
		local so="$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
		if ! sha_ok "$so" "$CPU_SHA256"; then
			log "sha256 mismatch for libonnxruntime.so.1 from onnxruntime-node@$ORT_VERSION:"
			log "  got  $(sha256sum "$so" | cut -d' ' -f1)"
			log "  want $CPU_SHA256"
			exit 1
		fi
		mkdir -p "$dest"
		# Rename into place last, so that a half-copied file is never taken for the library.
		cp "$so" "$out.tmp"
		mv "$out.tmp" "$out"
		log "installed $out (sha256 $CPU_SHA256)"
	fi
	echo "export ONNXRUNTIME_LIB=$out"
}

cuda_major() {
	local v=""
	if command -v nvidia-smi >/dev/null 2>&1; then
		# "CUDA Version: 13.0" in the banner is the driver's highest supported runtime.
		v=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -n1)
	fi
	# A libcudart on the loader path is the runtime that will actually be used; prefer it.
	local rt
	rt=$(ldconfig -p 2>/dev/null | sed -n 's/.*libcudart\.so\.\([0-9][0-9]*\) .*/\1/p' | sort -n | tail -n1)
	if [ -n "$rt" ]; then v=$rt; fi
	echo "$v"
}

install_gpu() {
	command -v curl >/dev/null || { log "curl is needed"; exit 1; }
	local major
	major=$(cuda_major)
	if [ -z "$major" ]; then
		log "no CUDA found (nvidia-smi and libcudart both missing); is this a GPU VM with drivers?"
		exit 1
	fi
	log "CUDA major version: $major"
	local api="https://api.github.com/repos/microsoft/onnxruntime/releases/tags/v$ORT_VERSION"
	local rel
	rel=$(curl -fsSL -H "Accept: application/vnd.github+json" "$api") || { log "cannot read $api"; exit 1; }
	# Asset names: onnxruntime-linux-x64-gpu_cuda13-<v>.tgz / onnxruntime-linux-x64-gpu-<v>.tgz
	# (the plain -gpu build is the release's default CUDA line). Pick the explicit one first.
	local name url digest
	for cand in "onnxruntime-linux-x64-gpu_cuda$major-$ORT_VERSION.tgz" "onnxruntime-linux-x64-gpu-$ORT_VERSION.tgz"; do
		url=$(printf '%s' "$rel" | python3 -c '
import json, sys
rel = json.load(sys.stdin)
for a in rel.get("assets", []):
    if a["name"] == sys.argv[1]:
        print(a["browser_download_url"], a.get("digest") or "")
' "$cand")
		if [ -n "$url" ]; then
			name=$cand
			digest=${url#* }
			url=${url%% *}
			break
		fi
	done
	if [ -z "${name:-}" ]; then
		log "no linux-x64 GPU asset for CUDA $major in ORT v$ORT_VERSION; assets are:"
		printf '%s' "$rel" | python3 -c 'import json,sys; [print("  "+a["name"]) for a in json.load(sys.stdin).get("assets",[])]' >&2
		log "for CUDA 13 see also npm com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 (header of this script)"
		exit 1
	fi
	if [ "$name" = "onnxruntime-linux-x64-gpu-$ORT_VERSION.tgz" ]; then
		log "note: using the default GPU build; check that its CUDA line matches CUDA $major (ldd on libonnxruntime_providers_cuda.so below)"
	fi
	local want=${ORT_GPU_SHA256:-${digest#sha256:}}
	if [ -z "$want" ]; then
		log "GitHub gives no digest for $name; set ORT_GPU_SHA256 to the checksum from the release page"
		exit 1
	fi
	local gdest="$dest/gpu-cuda$major-$ORT_VERSION"
	local lib="$gdest/lib/libonnxruntime.so.$ORT_VERSION"
	local stamp="$gdest/.sha256"
	if [ -f "$lib" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		log "ok: $gdest already present (archive sha256 $want)"
	else
		local work
		work=$(mktemp -d)
		trap 'rm -rf "$work"' RETURN
		log "download $url"
		curl -fL --retry 3 -o "$work/$name" "$url"
		if ! sha_ok "$work/$name" "$want"; then
			log "sha256 mismatch for $name: got $(sha256sum "$work/$name" | cut -d' ' -f1), want $want"
			exit 1
		fi
		mkdir -p "$work/x"
		tar -xzf "$work/$name" -C "$work/x" --strip-components=1
		rm -rf "$gdest.tmp"
		mkdir -p "$dest"
		mv "$work/x" "$gdest.tmp"
		echo "$want" >"$gdest.tmp/.sha256"
		rm -rf "$gdest"
		mv "$gdest.tmp" "$gdest"
		log "installed $gdest (archive sha256 $want)"
	fi
	local prov="$gdest/lib/libonnxruntime_providers_cuda.so"
	if [ -f "$prov" ] && command -v ldd >/dev/null; then
		local missing
		missing=$(ldd "$prov" 2>/dev/null | grep 'not found' || true)
		if [ -n "$missing" ]; then
			log "warning: the CUDA provider misses libraries (install the CUDA $major runtime and cuDNN 9):"
			echo "$missing" >&2
		fi
	fi
	echo "export ONNXRUNTIME_LIB=$lib"
}

install_cuda_npm() {
	local cuda="$dest/libonnxruntime_providers_cuda.so" shared="$dest/libonnxruntime_providers_shared.so"
	if sha_ok "$cuda" "$CUDA_PROVIDER_SHA256" && sha_ok "$shared" "$SHARED_PROVIDER_SHA256"; then
		log "ok: CUDA provider already present beside the CPU library (sha256 verified)"
	else
		command -v npm >/dev/null || { log "npm is needed"; exit 1; }
		local work
		work=$(mktemp -d)
		trap 'rm -rf "$work"' RETURN
		log "npm pack $UNITY_PKG@$UNITY_VERSION (about 180 MB, no package scripts run)"
		(cd "$work" && npm pack --silent "$UNITY_PKG@$UNITY_VERSION" >/dev/null)
		local tgz="$work/$UNITY_PKG-$UNITY_VERSION.tgz"
		sha_ok "$tgz" "$UNITY_TGZ_SHA256" || { log "sha256 mismatch for $tgz"; exit 1; }
		tar -xzf "$tgz" -C "$work" package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so \
			package/Plugins/Linux/x64/libonnxruntime_providers_shared.so package/LICENSE
		local x="$work/package/Plugins/Linux/x64"
		sha_ok "$x/libonnxruntime_providers_cuda.so" "$CUDA_PROVIDER_SHA256" || { log "sha256 mismatch: providers_cuda"; exit 1; }
		sha_ok "$x/libonnxruntime_providers_shared.so" "$SHARED_PROVIDER_SHA256" || { log "sha256 mismatch: providers_shared"; exit 1; }
		mkdir -p "$dest"
		cp "$work/package/LICENSE" "$dest/onnxruntime-providers-$UNITY_VERSION.LICENSE"
		for f in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
			cp "$x/$f" "$dest/$f.tmp"
			mv "$dest/$f.tmp" "$dest/$f"
		done
		log "installed the CUDA 13 provider (ORT $ORT_VERSION) into $dest"
	fi
	if command -v ldd >/dev/null; then
		local missing
		missing=$(ldd "$cuda" 2>/dev/null | grep 'not found' || true)
		[ -z "$missing" ] || log "note: on this machine the provider misses (expected without CUDA 13):" $missing
	fi
}

case "${1:-}" in
"") install_cpu ;;
--cuda-npm)
	install_cpu
	install_cuda_npm
	;;
--gpu) install_gpu ;;
-h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
