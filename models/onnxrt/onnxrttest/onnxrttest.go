// Package onnxrttest gives test binaries one ONNX Runtime per process: open it in TestMain,
// and let each test that needs it call Require, which fails under CI and skips elsewhere when
// the library is missing.
package onnxrttest

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/testenv"
	"connectome/models/onnxrt"
)

// Env is the test binary's runtime, or the reason there is none.
type Env struct {
	RT  *onnxrt.Runtime
	Err error
}

// Open locates the library and initialises ONNX Runtime once. Call it from TestMain; it never
// fails, Require reports the problem.
func Open() *Env {
	lib, err := LibraryPath()
	if err != nil {
		return &Env{Err: err}
	}
	rt := onnxrt.New(lib, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := rt.Init(); err != nil {
		return &Env{Err: err}
	}
	return &Env{RT: rt}
}

// LibraryPath is the library tests use: $ONNXRUNTIME_LIB, else the copy `make deps` puts in
// the repository's third_party/onnxruntime (a test binary has no installed library beside it).
func LibraryPath() (string, error) {
	if os.Getenv(onnxrt.EnvLibrary) != "" {
		return onnxrt.LibraryPath()
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "third_party", "onnxruntime", onnxrt.LibraryName), nil
}

// UseRepoLibrary points ONNXRUNTIME_LIB at the repository's library when it is unset, so that
// code that locates the library as the binary does (beside the executable, which a test binary
// is not) finds the one `make deps` installed. Call it from TestMain.
func UseRepoLibrary() {
	if os.Getenv(onnxrt.EnvLibrary) != "" {
		return
	}
	if p, err := LibraryPath(); err == nil {
		os.Setenv(onnxrt.EnvLibrary, p)
	}
}

// Require returns the runtime, or fails the test when env CI is set and skips it otherwise.
func (e *Env) Require(t testing.TB) *onnxrt.Runtime {
	t.Helper()
	if e.Err != nil {
		testenv.Missing(t, "ONNX Runtime not available (run scripts/install-onnxruntime.sh): %v", e.Err)
	}
	return e.RT
}

// Close releases the runtime.
func (e *Env) Close() {
	if e.RT != nil {
		e.RT.Close()
	}
}

// TestModelsYAML is a models file of two small test encoders (cubic and non-cubic inputs,
// different batch sizes and axis orders), whose ONNX files encoders.WriteDemoModels writes.
const TestModelsYAML = `obtain: the tests write these generated encoders (internal/encoders.WriteDemoModels)
models:
  - name: test-conv-a
    title: test encoder A
    onnx: test-conv-a.onnx
    sha256: ""
    input: input
    output: embedding
    embedding_dim: 12
    batch_size: 4
    preprocess: {axcodes: RAS, pixdim: [1, 1, 1], roi: [16, 16, 16], hu_range: [-1024, 2048], clamp: [0, 1]}
  - name: test-conv-b
    title: test encoder B
    onnx: test-conv-b.onnx
    sha256: ""
    input: input
    output: embedding
    embedding_dim: 7
    batch_size: 3
    preprocess: {axcodes: SPL, pixdim: [1, 1, 1], roi: [8, 12, 16], hu_range: [-1024, 2048], clamp: [0, 1]}
`
