package onnxrt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/encoders"
	"connectome/models/onnxrt"
	"connectome/models/onnxrt/onnxrttest"
)

var env *onnxrttest.Env

func TestMain(m *testing.M) {
	env = onnxrttest.Open()
	code := m.Run()
	env.Close()
	os.Exit(code)
}

func writeModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test-conv.onnx")
	if err := encoders.TestEncoder("test-conv", [5]int64{0, 1, 8, 8, 8}, 6, 1).WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCUDARequestedWithoutCUDA(t *testing.T) {
	rt := env.Require(t)
	if os.Getenv("CONNECTOME_HAVE_CUDA") != "" {
		t.Skip("CONNECTOME_HAVE_CUDA is set: this machine has a working CUDA provider")
	}
	_, err := rt.CheckDevice(onnxrt.Options{Device: onnxrt.DeviceCUDA})
	if !errors.Is(err, onnxrt.ErrCUDAUnavailable) {
		t.Fatalf("device cuda on a machine without CUDA: err %v, want ErrCUDAUnavailable", err)
	}
	for _, want := range []string{"CUDA execution provider unavailable", "install-onnxruntime.sh --gpu", "--device cpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	t.Logf("message: %v", err)
	if _, err := rt.Open(writeModel(t), encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceCUDA}); !errors.Is(err, onnxrt.ErrCUDAUnavailable) {
		t.Errorf("Open with cuda: %v", err)
	}
	p, err := rt.CheckDevice(onnxrt.Options{Device: onnxrt.DeviceAuto})
	if err != nil || p != "CPU" {
		t.Errorf("auto: provider %q, err %v; want CPU", p, err)
	}
	s, err := rt.Open(writeModel(t), encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceAuto})
	if err != nil || s.Provider != "CPU" {
		t.Fatalf("auto session: %v", err)
	}
}

func TestSessionCachedAndRuns(t *testing.T) {
	rt := env.Require(t)
	path := writeModel(t)
	o := onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: 1}
	a, err := rt.Open(path, encoders.InputName, encoders.OutputName, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rt.Open(path, encoders.InputName, encoders.OutputName, o)
	if err != nil || a != b {
		t.Errorf("second Open made a new session (%p vs %p, %v)", a, b, err)
	}
	shape, out, err := a.Run([]int64{2, 1, 8, 8, 8}, make([]float32, 2*512))
	if err != nil || len(shape) != 2 || shape[0] != 2 || shape[1] != 6 || len(out) != 12 {
		t.Errorf("run: shape %v, %d values, %v", shape, len(out), err)
	}
	if _, _, err := a.Run([]int64{1, 1, 4, 8, 8}, make([]float32, 256)); err == nil {
		t.Error("wrong input shape accepted")
	}
	if _, err := rt.Open(path, "nope", encoders.OutputName, o); err == nil {
		t.Error("unknown input name accepted")
	}
	if rt.Version() != onnxrt.ORTVersion && os.Getenv(onnxrt.EnvLibrary) == "" {
		t.Errorf("ORT version %q, want %s", rt.Version(), onnxrt.ORTVersion)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []onnxrt.Options{
		{Device: "gpu"}, {Device: "cpu", CUDNNConvAlgoSearch: "FAST"}, {Device: "cpu", ArenaExtendStrategy: "x"},
		{Device: "cpu", Threads: -1},
	} {
		if o.Validate() == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if err := (onnxrt.Options{Device: "cuda", CUDNNConvAlgoSearch: "HEURISTIC", ArenaExtendStrategy: "kSameAsRequested"}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestMissingLibrary(t *testing.T) {
	rt := onnxrt.New(filepath.Join(t.TempDir(), "libonnxruntime.so.1.29.0"), nil)
	err := rt.Init()
	if err == nil || !strings.Contains(err.Error(), "install-onnxruntime.sh") {
		t.Errorf("missing library: %v", err)
	}
	if err := onnxrt.New("relative/lib.so", nil).Init(); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("relative path: %v", err)
	}
}

func TestLibraryPath(t *testing.T) {
	t.Setenv(onnxrt.EnvLibrary, "some/lib.so")
	p, err := onnxrt.LibraryPath()
	if err != nil || !filepath.IsAbs(p) || !strings.HasSuffix(p, "some/lib.so") {
		t.Errorf("env path: %q %v", p, err)
	}
	t.Setenv(onnxrt.EnvLibrary, "")
	p, err = onnxrt.LibraryPath()
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if want := filepath.Join(filepath.Dir(exe), onnxrt.LibraryDir, onnxrt.LibraryName); err != nil || p != want {
		t.Errorf("default path: %q %v, want %q (beside the executable)", p, err, want)
	}
}

// TestClosingAnotherRuntimeKeepsTheEnvironment: a Runtime that never initialised, or that
// shares the process's environment, must not destroy it under the sessions of the Runtime
// that created it (several pipelines in one process, as the shard tests run).
func TestClosingAnotherRuntimeKeepsTheEnvironment(t *testing.T) {
	rt := env.Require(t)
	path := writeModel(t)
	s, err := rt.Open(path, encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	unused := onnxrt.New(rt.Library(), nil)
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}
	sharing := onnxrt.New(rt.Library(), nil)
	if err := sharing.Init(); err != nil {
		t.Fatal(err)
	}
	if err := sharing.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Run([]int64{1, 1, 8, 8, 8}, make([]float32, 512)); err != nil {
		t.Fatalf("session broken after another Runtime closed: %v", err)
	}
}
