// Package onnxrttest gives test binaries one ONNX Runtime per process: open it in TestMain,
// and let each test that needs it call Require, which fails under CI and skips elsewhere when
// the library is missing.
package onnxrttest

import (
	"log/slog"
	"os"
	"testing"

	"connectome/models/onnxrt"
)

// Env is the test binary's runtime, or the reason there is none.
type Env struct {
	RT  *onnxrt.Runtime
	Err error
}

// Open locates the library (ONNXRUNTIME_LIB or the repository default) and initialises ONNX
// Runtime once. Call it from TestMain; it never fails, Require reports the problem.
func Open() *Env {
	lib, err := onnxrt.LibraryPath()
	if err != nil {
		return &Env{Err: err}
	}
	rt := onnxrt.New(lib, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := rt.Init(); err != nil {
		return &Env{Err: err}
	}
	return &Env{RT: rt}
}

// Require returns the runtime, or fails the test when env CI is set and skips it otherwise.
func (e *Env) Require(t testing.TB) *onnxrt.Runtime {
	t.Helper()
	if e.Err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ONNX Runtime is required under CI: %v", e.Err)
		}
		t.Skipf("ONNX Runtime not available (run scripts/install-onnxruntime.sh): %v", e.Err)
	}
	return e.RT
}

// Close releases the runtime.
func (e *Env) Close() {
	if e.RT != nil {
		e.RT.Close()
	}
}
