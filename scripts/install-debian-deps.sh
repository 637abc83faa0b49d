#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only those that are missing.
#   chromium          the browser the report tests drive
#   python3-numpy     NumPy references (preprocessing golden tests, similarity benchmark)
#   libopenblas0-pthread  the BLAS NumPy must use for the similarity benchmark to mean anything
#   python3-pydicom   the reference DICOM reader of ../shared/tools/patchref.py, and the RLE
#                     encoder and test files of dicomio's decoder tests
#   dcmtk             dcmcjpeg/dcmcjpls and their decoders: encoders and second references of
#                     dicomio's JPEG and JPEG-LS decoder tests
#   libjpeg-turbo-progs  cjpeg, which writes the JPEG restart intervals dicomio's test decodes
#   libopenjp2-7      OpenJPEG 2.5 (libopenjp2.so.7), which dicomio loads at run time (dlopen)
#                     to decode JPEG 2000 slices; the runtime library only, no headers
set -euo pipefail
pkgs=(chromium python3-numpy python3-pydicom libopenblas0-pthread dcmtk libjpeg-turbo-progs libopenjp2-7)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "debian: ${pkgs[*]} already installed"
  exit 0
fi
echo "debian: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "debian: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
