# connectome: the NLST-Sybil tumour connectome pipeline.
# `make` lists the targets. Setup on a fresh machine is `make demo` or `make test`: each installs
# what it needs (Go modules, the ONNX Runtime CPU library, the graph library, Debian packages).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
BIN         := bin/connectome
ORT_VERSION := 1.29.0
ORT_LIB     := $(CURDIR)/third_party/onnxruntime/libonnxruntime.so.$(ORT_VERSION)
export ONNXRUNTIME_LIB ?= $(ORT_LIB)
CONFIG      ?= configs/nlst-sybil.yaml
GO_TEST_FLAGS ?= -count=1 -timeout 45m

.PHONY: help deps deps-go deps-ort deps-web deps-debian deps-demo build test lint bench demo pipeline clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: deps-go deps-ort deps-web deps-debian deps-demo ## install everything the build, tests and demo need

deps-go:
	@echo "deps: Go modules"
	@$(GO) mod download

deps-ort:
	@scripts/install-onnxruntime.sh

deps-web:
	@scripts/fetch-web-deps.sh

deps-debian:
	@scripts/install-debian-deps.sh

# The demo command links the in-process BigQuery emulator, whose first compile takes minutes:
# do it once here so that `make demo` itself is quick.
deps-demo: deps-go
	@echo "deps: building bin/connectome-demo (the first build compiles the BigQuery emulator: a few minutes)"
	@$(GO) build -o bin/connectome-demo ./cmd/connectome-demo

build: deps-go ## build bin/connectome
	@echo "build: $(BIN)"
	@$(GO) build -o $(BIN) ./cmd/connectome

lint: deps-go ## gofmt, go vet, go mod tidy diff, and the Python scripts compile
	@echo "lint: gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "lint: go vet"
	@$(GO) vet ./...
	@echo "lint: go mod tidy"
	@cp go.mod /tmp/connectome-go.mod.bak && cp go.sum /tmp/connectome-go.sum.bak
	@$(GO) mod tidy
	@if ! diff -q go.mod /tmp/connectome-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/connectome-go.sum.bak >/dev/null; then \
		diff -u /tmp/connectome-go.mod.bak go.mod || true; cp /tmp/connectome-go.mod.bak go.mod; cp /tmp/connectome-go.sum.bak go.sum; \
		echo "go mod tidy changes go.mod/go.sum: run it and commit"; exit 1; fi
	@echo "lint: python scripts compile"
	@for f in $$(git ls-files 'scripts/*.py' 'scripts/**/*.py' 2>/dev/null); do /usr/bin/python3 -m py_compile "$$f" || python3 -m py_compile "$$f"; done

test: deps lint ## everything CI runs: deps, lint, and all Go tests (real ONNX Runtime, emulators, chromium)
	@echo "test: go test ./... (ONNXRUNTIME_LIB=$(ONNXRUNTIME_LIB))"
	@$(GO) test $(GO_TEST_FLAGS) ./...

bench: deps ## the benchmarks of docs/BENCHMARKS.md, each against its reference in the same run
	@scripts/bench/run-all.sh

demo: deps build ## the whole pipeline offline on the embedded synthetic default
	@scripts/demo.sh

pipeline: deps build ## the real run on a GPU VM (needs ADC credentials, GOOGLE_CLOUD_PROJECT, CUDA; see README)
	@$(BIN) run --config $(CONFIG) --device cuda --resume

clean: ## remove build outputs (keeps runs/ and third_party/)
	rm -rf bin
