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
PYTHON      ?= python3
# Environments and downloads shared by every checkout on the machine (CI's, worktrees), outside git.
CONNECTOME_CACHE ?= $(HOME)/.cache/connectome

.PHONY: help deps deps-go deps-ort deps-web deps-axe deps-debian deps-demo build test crash-test lint bench demo pipeline clean \
	export-venv models-random models-random-ci ctvit-compare notebooks notebooks-python notebooks-published published-run \
	idc-index reference-venv

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: deps-go deps-ort deps-web deps-axe deps-debian deps-demo ## install everything the build, tests and demo need

deps-go:
	@echo "deps: Go modules"
	@$(GO) mod download

deps-ort:
	@scripts/install-onnxruntime.sh

deps-web:
	@scripts/fetch-web-deps.sh

# The accessibility checker the report's browser tests inject into the page (tests only).
deps-axe:
	@scripts/fetch-axe-core.sh

deps-debian:
	@scripts/install-debian-deps.sh

# The demo command links the in-process BigQuery emulator, whose first compile takes minutes:
# do it once here so that `make demo` itself is quick.
deps-demo: deps-go deps-web deps-ort
	@echo "deps: building bin/connectome-demo (the first build compiles the BigQuery emulator: a few minutes)"
	@$(GO) build -o bin/connectome-demo ./cmd/connectome-demo
	@install -D -m 0644 $(ORT_LIB) bin/lib/$(notdir $(ORT_LIB))

# The binary is self-contained: the report's graph library is embedded at compile time (so it
# is fetched first) and the ONNX Runtime CPU library is installed beside it, in bin/lib/.
build: deps-go deps-web deps-ort ## build bin/connectome (with bin/lib/, its ONNX Runtime)
	@echo "build: $(BIN)"
	@$(GO) build -o $(BIN) ./cmd/connectome
	@install -D -m 0644 $(ORT_LIB) bin/lib/$(notdir $(ORT_LIB))

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
	@for f in $$(git ls-files 'scripts/*.py' 'scripts/**/*.py' 'notebooks/*.py' 2>/dev/null); do /usr/bin/python3 -m py_compile "$$f" || python3 -m py_compile "$$f"; done

# The engine and the stages run under the race detector. The BigQuery emulator's test package
# does not: compiling the emulator with -race alone would take a quarter of an hour here.
RACE_PKGS = $$($(GO) list ./pipeline/... ./stages/... | grep -v /emulatortest)
OTHER_PKGS = $$($(GO) list ./... | grep -v -E '^connectome/(pipeline|stages)(/|$$)|/crashtest$$') connectome/stages/cohort/emulatortest
# The 9 random-weight encoders (models-random-ci) for stages/embed's TestRealModelsMatchPyTorch.
REALMODELS_ENV = CONNECTOME_REALMODELS_DIR="$(RANDOM_CI_DIR)" CONNECTOME_EXPORT_PYTHON="$(EXPORT_PY)" CONNECTOME_REALMODELS_SEED=$(RANDOM_SEED)

test: deps lint models-random-ci idc-index reference-venv ## everything CI runs: deps, lint, the 9 random-weight encoders, IDC's index, all Go tests, the crash test, the notebooks
	@echo "test: go test -race on the engine and the stages (ONNXRUNTIME_LIB=$(ONNXRUNTIME_LIB))"
	@$(IDC_INDEX_ENV) $(GO) test $(GO_TEST_FLAGS) -race -skip TestRealModelsMatchPyTorch $(RACE_PKGS)
	@echo "test: the 9 random-weight encoders through the embed stage against PyTorch (no race detector: the time is in ONNX Runtime and PyTorch)"
	@$(REALMODELS_ENV) $(GO) test $(GO_TEST_FLAGS) -v -run TestRealModelsMatchPyTorch ./stages/embed | grep -E '^(=== RUN|--- |\s+realmodels_test.go|ok|FAIL|PASS)'
	@echo "test: go test on everything else"
	@$(IDC_INDEX_ENV) $(REF_ENV) $(GO) test $(GO_TEST_FLAGS) $(OTHER_PKGS)
	@$(MAKE) --no-print-directory crash-test
	@$(MAKE) --no-print-directory notebooks

# IDC's own series index of the default release (testdata/idc-index: the PyPI wheel
# idc-index-data, pinned by hash, downloaded without installing anything), for
# stages/fetch's TestIDCIndexMatchesAssumptions. Cached outside git by the pin's hash.
IDC_INDEX_REQ := testdata/idc-index/requirements.txt
IDC_INDEX_DIR ?= $(CONNECTOME_CACHE)/idc-index-$(shell sha256sum $(IDC_INDEX_REQ) | cut -c1-12)
IDC_INDEX_ENV = CONNECTOME_IDC_INDEX_DIR="$(IDC_INDEX_DIR)/pkg/idc_index_data"

idc-index: $(IDC_INDEX_DIR)/.installed ## download IDC's series index (idc-index-data, pinned) for the tests

# As the reference environment below: the pin's hash names the folder, so no prerequisite.
$(IDC_INDEX_DIR)/.installed:
	@mkdir -p $(dir $(IDC_INDEX_DIR))
	@flock $(IDC_INDEX_DIR).lock $(SHELL) -eu -o pipefail -c '\
		if [ -e $@ ]; then exit 0; fi; \
		echo "idc-index: downloading IDC'"'"'s series index ($(IDC_INDEX_REQ), about 80 MB) into $(IDC_INDEX_DIR)"; \
		rm -rf $(IDC_INDEX_DIR); mkdir -p $(IDC_INDEX_DIR); \
		$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
			-r $(IDC_INDEX_REQ) -d $(IDC_INDEX_DIR)/wheel; \
		$(PYTHON) -m zipfile -e $(IDC_INDEX_DIR)/wheel/*.whl $(IDC_INDEX_DIR)/pkg; \
		touch $@'

# The reference Python of the Go tests (testdata/reference-python/requirements.txt, pinned):
# pydicom with its decoding plugins (dicomio) and highdicom (sr); outside git, named by the
# requirements' hash.
REF_REQ   := testdata/reference-python/requirements.txt
REF_VENV  ?= $(CONNECTOME_CACHE)/venv-reference-$(shell sha256sum $(REF_REQ) | cut -c1-12)
REF_ENV    = CONNECTOME_REFERENCE_PYTHON="$(REF_VENV)/bin/python"

reference-venv: $(REF_VENV)/.installed ## pydicom with its codec plugins, and highdicom: the reference Python of the dicomio and sr tests

# No prerequisite on the requirements file: its hash names the folder, and a fresh checkout's
# newer file must not rebuild an environment of the same pins.
$(REF_VENV)/.installed:
	@mkdir -p $(dir $(REF_VENV))
	@flock $(REF_VENV).lock $(SHELL) -eu -o pipefail -c '\
		if [ -e $@ ]; then exit 0; fi; \
		echo "reference-venv: creating $(REF_VENV) from $(REF_REQ) (about 190 MB, a minute the first time)"; \
		rm -rf $(REF_VENV); \
		$(PYTHON) -m venv $(REF_VENV); \
		$(REF_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(REF_REQ); \
		touch $@'

# SIGKILL the demo at CRASH_POINTS seeded points (per run directory kind: local, gs:// on fake
# GCS) spread over every stage, resume until done, compare every table (docs/durability.md).
CRASH_SEED   ?= 18
CRASH_POINTS ?= 50
CRASH_KINDS  ?= local|gcs
crash-test: deps-go deps-web deps-ort ## kill -9 the demo anywhere, resume, same tables (CRASH_SEED, CRASH_POINTS)
	@echo "crash-test: CRASH_SEED=$(CRASH_SEED) CRASH_POINTS=$(CRASH_POINTS)"
	@CRASH_SEED=$(CRASH_SEED) CRASH_POINTS=$(CRASH_POINTS) $(GO) test $(GO_TEST_FLAGS) -v -run 'TestKillAnywhereResumeSameTables/($(CRASH_KINDS))$$' ./internal/demo/crashtest | grep -E '^(=== RUN|--- |\s+crash_test.go|ok|FAIL|PASS)'

# The notebooks run in their own virtual environment, made from notebooks/requirements.txt
# (every package pinned) outside the repository, under $(CONNECTOME_CACHE), in a folder named
# by the requirements' hash: a clean checkout on the same machine (CI's, another worktree's)
# reuses it, and a change of the requirements makes a new one. pip's own cache is used as well.
NB_VENV    ?= $(CONNECTOME_CACHE)/venv-notebooks-$(shell sha256sum notebooks/requirements.txt | cut -c1-12)
NB_PY      := $(NB_VENV)/bin/python
NB_OUT     ?= test-artifacts/notebooks
PUBLISHED  ?= ../shared/reference/nlst-sybil-embeddings

# The stamp is written last, so an interrupted install is redone; the lock keeps two makes
# (two worktrees, say) from building the same environment at once.
$(NB_VENV)/.installed:
	@mkdir -p $(dir $(NB_VENV))
	@flock $(NB_VENV).lock $(SHELL) -eu -o pipefail -c '\
		if [ -e $@ ]; then exit 0; fi; \
		echo "notebooks: creating $(NB_VENV) from notebooks/requirements.txt (a few minutes the first time)"; \
		rm -rf $(NB_VENV); \
		$(PYTHON) -m venv $(NB_VENV); \
		$(NB_PY) -m pip install --quiet --disable-pip-version-check -r notebooks/requirements.txt; \
		touch $@'

notebooks: deps $(NB_VENV)/.installed ## execute the notebooks on the demo run and on the published embeddings, and the notebook tests
	@$(MAKE) --no-print-directory demo
	@echo "notebooks: executing notebooks/*.ipynb on runs/demo (executed copies in $(NB_OUT)/demo)"
	@$(NB_PY) notebooks/execute.py --run-dir runs/demo --out $(NB_OUT)/demo
	@$(MAKE) --no-print-directory published-run
	@echo "notebooks: executing notebooks/connectome.ipynb on runs/published (executed copy in $(NB_OUT)/published)"
	@$(NB_PY) notebooks/execute.py --run-dir runs/published --params notebooks/published.yaml \
		--notebook notebooks/connectome.ipynb --out $(NB_OUT)/published
	@echo "notebooks: pytest notebooks/ (statistics, Parquet copies in DuckDB, the README's snippets)"
	@cd notebooks && $(abspath $(NB_PY)) -m pytest -q -p no:cacheprovider .

notebooks-python: $(NB_VENV)/.installed ## print the notebook environment's Python (made if missing)
	@echo $(NB_PY)

# The published NLST-Sybil embeddings (../shared/reference, read in place) as embeddings files,
# and a run over them: similarity and the map.
published-run: build $(NB_VENV)/.installed
	@echo "notebooks: the published embeddings ($(PUBLISHED)) → runs/published"
	@$(NB_PY) notebooks/published_embeddings.py --from $(PUBLISHED) --out runs/published-embeddings
	@$(BIN) run --from similarity --embeddings runs/published-embeddings/*.parquet --run-dir runs/published --progress log

notebooks-published: published-run ## re-render docs/example-published.html: the notebook on the published embeddings
	@$(NB_PY) notebooks/execute.py --run-dir runs/published --params notebooks/published.yaml \
		--notebook notebooks/connectome.ipynb --out runs/published/notebooks --html docs/example-published.html

bench: deps reference-venv ## the benchmarks of docs/BENCHMARKS.md, each against its reference in the same run
	@$(REF_ENV) scripts/bench/run-all.sh

demo: deps build ## the whole pipeline offline on the embedded synthetic default
	@scripts/demo.sh

pipeline: deps build ## the real run on a GPU VM (needs ADC credentials, GOOGLE_CLOUD_PROJECT, CUDA; see README)
	@$(BIN) run --config $(CONFIG) --device cuda --resume

# ---- the 9 published encoders: export environment, random-weight graphs, CT-CLIP comparison ----
# The export environment (scripts/requirements-export.txt, PyPI's torch with its CUDA libraries:
# about 3 GB to download, 5.6 GB installed) lives outside git, keyed by the requirements file's
# hash, so every checkout and CI run on a machine shares one.
EXPORT_REQ     := scripts/requirements-export.txt
EXPORT_VENV    ?= $(HOME)/.cache/connectome/venv-export-$(shell sha256sum $(EXPORT_REQ) | cut -c1-12)
EXPORT_PY      := $(EXPORT_VENV)/bin/python
RANDOM_DIR     ?= weights-random
RANDOM_SEED    ?= 0
EXPORT_THREADS ?= 2

export-venv: $(EXPORT_VENV)/.installed ## the pinned Python environment of scripts/export_models.py (outside git)

$(EXPORT_VENV)/.installed: $(EXPORT_REQ)
	@echo "export-venv: $(EXPORT_VENV)"
	@start=$$(date +%s); python3 -m venv "$(EXPORT_VENV)" && \
		"$(EXPORT_PY)" -m pip install -q --disable-pip-version-check --no-deps -r $(EXPORT_REQ) && \
		echo "export-venv: installed in $$(( $$(date +%s) - start )) s, $$(du -sh "$(EXPORT_VENV)" | cut -f1)"
	@touch $@

models-random: export-venv build ## the 9 encoders with random weights in weights-random/ (+ models.yaml), verified
	@scripts/models-random.sh "$(EXPORT_PY)" "$(RANDOM_DIR)" $(RANDOM_SEED) $(EXPORT_THREADS) $(BIN)

# For make test: the same export in a per-user cache, so that CI runs on one machine export once
# (scripts/models-random.sh skips an export whose inputs are unchanged).
RANDOM_CI_DIR ?= $(HOME)/.cache/connectome/weights-random-ci

models-random-ci: export-venv build
	@scripts/models-random.sh "$(EXPORT_PY)" "$(RANDOM_CI_DIR)" $(RANDOM_SEED) $(EXPORT_THREADS) $(BIN)

ctvit-compare: export-venv ## our CTViT against upstream CT-CLIP's: make ctvit-compare CTCLIP=path/to/CT-CLIP checkout
	@test -n "$(CTCLIP)" || { echo "usage: make ctvit-compare CTCLIP=path/to/a/CT-CLIP/checkout"; exit 2; }
	@"$(EXPORT_PY)" -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-ctvit-compare.txt
	@"$(EXPORT_PY)" scripts/export/ctvit_compare.py "$(CTCLIP)"

clean: ## remove build outputs (keeps runs/, third_party/ and the fetched graph library)
	rm -rf bin
