#!/usr/bin/env bash
# Similarity benchmark against FAISS (scripts/bench/similarity_faiss.py says what and how):
# makes what it needs, then runs the comparison. Arguments go to `similarity_faiss.py bench`,
# e.g. --cases 50000x512 --repeat 2 --baseline /path/to/connectome-of-main.
#   - Debian's python3-faiss (the second FAISS row) and GNU time (peak RSS), if missing;
#   - faiss-cpu, numpy and pyarrow pinned in requirements-faiss.txt, in a virtual environment
#     outside the repository ($CONNECTOME_CACHE, default ~/.cache/connectome), remade when the
#     requirements change; never the system Python's packages;
#   - bin/connectome, built from this checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."

pkgs=(python3-faiss python3-numpy python3-venv time)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "similarity-faiss: installing Debian ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

req=scripts/bench/requirements-faiss.txt
venv=${CONNECTOME_CACHE:-$HOME/.cache/connectome}/venv-bench-faiss
stamp=$(sha256sum "$req" | cut -c1-16)
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]; then
  echo "similarity-faiss: making $venv from $req" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$stamp" >"$venv/.requirements"
fi

go build -o bin/connectome ./cmd/connectome
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(go version | cut -d' ' -f3), load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$venv/bin/python" scripts/bench/similarity_faiss.py bench --connectome bin/connectome "$@"
