# connectome for sharded GPU runs (docs/sharding.md): the binary, the GPU build of ONNX Runtime
# (scripts/install-onnxruntime.sh --gpu, the same release as the CPU library, checksum-verified)
# and the models, on a CUDA + cuDNN runtime base. Build on a machine with internet:
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/connectome/connectome:TAG .
#
# weights/ must hold the ONNX files of configs/models.yaml (scripts/export_models.py); they are
# copied in and verified against their sha256 at every embed stage start.

# --- build: a static-enough Go binary (cgo off: ONNX Runtime is loaded with dlopen) ---
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/connectome ./cmd/connectome

# --- runtime: CUDA 12 runtime with cuDNN 9, what the ONNX Runtime 1.29 CUDA 12 build expects ---
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl bash python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/connectome
COPY scripts/install-onnxruntime.sh scripts/
# The script picks the build for the CUDA major version that libcudart reports (no GPU needed
# at build time) and verifies it against the digest GitHub publishes.
RUN bash scripts/install-onnxruntime.sh --gpu | tee /tmp/ort.txt \
 && ln -s "$(sed -n 's/^export ONNXRUNTIME_LIB=//p' /tmp/ort.txt | tail -1)" /opt/connectome/libonnxruntime.so
ENV ONNXRUNTIME_LIB=/opt/connectome/libonnxruntime.so
COPY --from=build /out/connectome /usr/local/bin/connectome
COPY configs/ configs/
COPY weights/ weights/
# Each task works in a local copy (--work-dir) of a run directory in Cloud Storage
# (--run-dir gs://BUCKET/PREFIX, credentials from the VM's or pod's service account), or on a
# shared volume (see docs/sharding.md). configs/ is baked in: pass --config configs/<file>.
ENTRYPOINT ["connectome"]
CMD ["run", "--help"]
