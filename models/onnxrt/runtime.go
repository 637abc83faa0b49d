// Package onnxrt runs ONNX models with ONNX Runtime (through github.com/yalue/onnxruntime_go):
// the shared library's location, the process-wide environment, and one session per model with
// the CPU or CUDA execution provider.
//
// ONNX Runtime's environment is process-global: create one Runtime in main (or TestMain) and
// pass it down. Sessions are cached by the Runtime, so asking twice for the same model and
// options gives the same session; sessions are never destroyed and re-created in a loop
// (resident memory grows with each create/destroy: yalue/onnxruntime_go#113).
package onnxrt

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"connectome/models/onnx"
)

// The ONNX Runtime the code is pinned to: onnxruntime_go v1.27.0 needs C API 24 (ORT ≥ 1.24);
// scripts/install-onnxruntime.sh installs 1.29.0, and `make build` installs it beside the binary.
const (
	ORTVersion  = "1.29.0"
	EnvLibrary  = "ONNXRUNTIME_LIB"
	LibraryName = "libonnxruntime.so." + ORTVersion
	// LibraryDir is where the library is installed relative to the executable's directory.
	LibraryDir  = "lib"
	installHint = "run `make build` (it installs the CPU library beside bin/connectome), scripts/install-onnxruntime.sh --gpu for CUDA, or set " + EnvLibrary + " to the library's absolute path"
)

// Device choices.
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
	DeviceAuto = "auto"
)

// ErrCUDAUnavailable is wrapped by every error that means "the CUDA provider cannot be used".
var ErrCUDAUnavailable = errors.New("CUDA execution provider unavailable")

// LibraryPath returns the absolute path of the ONNX Runtime library: $ONNXRUNTIME_LIB when set,
// else LibraryDir/LibraryName beside the executable, where `make build` installs it. It never
// looks at the working directory, so the binary behaves the same wherever it is started. The
// file is not required to exist (Init says so when it does not).
func LibraryPath() (string, error) {
	if p := os.Getenv(EnvLibrary); p != "" {
		return filepath.Abs(p)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the ONNX Runtime library: %w; %s", err, installHint)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), LibraryDir, LibraryName), nil
}

// Options choose the execution provider and its settings for a session.
type Options struct {
	Device              string // cpu, cuda or auto
	DeviceID            int    // CUDA device
	CUDNNConvAlgoSearch string // EXHAUSTIVE, HEURISTIC or DEFAULT ("" = ORT's default)
	GPUMemLimitBytes    int64  // 0 = no limit
	ArenaExtendStrategy string // kNextPowerOfTwo or kSameAsRequested ("" = ORT's default)
	Threads             int    // CPU intra-op threads; 0 = ORT's default (all cores)
}

// Validate checks the option values.
func (o Options) Validate() error {
	switch o.Device {
	case DeviceCPU, DeviceCUDA, DeviceAuto:
	default:
		return fmt.Errorf("device %q: want cpu, cuda or auto", o.Device)
	}
	switch o.CUDNNConvAlgoSearch {
	case "", "EXHAUSTIVE", "HEURISTIC", "DEFAULT":
	default:
		return fmt.Errorf("cudnn_conv_algo_search %q: want EXHAUSTIVE, HEURISTIC or DEFAULT", o.CUDNNConvAlgoSearch)
	}
	switch o.ArenaExtendStrategy {
	case "", "kNextPowerOfTwo", "kSameAsRequested":
	default:
		return fmt.Errorf("arena_extend_strategy %q: want kNextPowerOfTwo or kSameAsRequested", o.ArenaExtendStrategy)
	}
	if o.DeviceID < 0 || o.GPUMemLimitBytes < 0 || o.Threads < 0 {
		return errors.New("device id, GPU memory limit and threads must not be negative")
	}
	return nil
}

// cudaOptions are the CUDA provider's key/value settings.
func (o Options) cudaOptions() map[string]string {
	m := map[string]string{"device_id": strconv.Itoa(o.DeviceID)}
	if o.CUDNNConvAlgoSearch != "" {
		m["cudnn_conv_algo_search"] = o.CUDNNConvAlgoSearch
	}
	if o.GPUMemLimitBytes > 0 {
		m["gpu_mem_limit"] = strconv.FormatInt(o.GPUMemLimitBytes, 10)
	}
	if o.ArenaExtendStrategy != "" {
		m["arena_extend_strategy"] = o.ArenaExtendStrategy
	}
	return m
}

// Runtime is the process's ONNX Runtime: the library, the environment and the sessions.
type Runtime struct {
	lib string
	log *slog.Logger

	once    sync.Once
	initErr error

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	owner    bool // this Runtime created the process's environment, so it destroys it
}

// New prepares a Runtime for the library at lib (an absolute path; see LibraryPath). Nothing
// is loaded until Init or the first Open.
func New(lib string, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{lib: lib, log: log, sessions: map[string]*Session{}}
}

// Library is the library path the Runtime loads.
func (r *Runtime) Library() string { return r.lib }

// Init loads the library and creates the environment, once; later calls return the first
// result.
func (r *Runtime) Init() error {
	r.once.Do(func() {
		if !filepath.IsAbs(r.lib) {
			r.initErr = fmt.Errorf("ONNX Runtime library path %q is not absolute; %s", r.lib, installHint)
			return
		}
		if _, err := os.Stat(r.lib); err != nil {
			r.initErr = fmt.Errorf("ONNX Runtime library not found at %s; %s", r.lib, installHint)
			return
		}
		if ort.IsInitialized() {
			// Another Runtime of this process (a test binary running several commands) set
			// the environment up; share it, and leave its teardown to that Runtime.
			r.log.Debug("onnx runtime environment already initialised in this process; sharing it", "library", r.lib)
			return
		}
		ort.SetSharedLibraryPath(r.lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			r.initErr = fmt.Errorf("initialise ONNX Runtime from %s: %w", r.lib, err)
			return
		}
		r.owner = true
		r.log.Debug("onnx runtime ready", "library", r.lib, "version", ort.GetVersion())
	})
	return r.initErr
}

// Version is the loaded ONNX Runtime's version ("" before Init).
func (r *Runtime) Version() string {
	if r.Init() != nil {
		return ""
	}
	return ort.GetVersion()
}

// Close destroys every session and the environment. The Runtime is unusable afterwards.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for k, s := range r.sessions {
		if err := s.s.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy session %s: %w", s.Path, err))
		}
		delete(r.sessions, k)
	}
	// A Runtime that never initialised, or shares another's environment, must not tear the
	// process's environment down under the other Runtime's sessions.
	if !r.closed && r.owner && ort.IsInitialized() {
		if err := ort.DestroyEnvironment(); err != nil {
			errs = append(errs, err)
		}
	}
	r.closed = true
	return errors.Join(errs...)
}

// CheckDevice resolves o.Device to the provider a session would use ("CPU" or "CUDA") by
// appending the CUDA provider to a throw-away set of session options: that is where ONNX
// Runtime loads libonnxruntime_providers_cuda.so and its CUDA libraries. For "cuda" a failure
// is returned (wrapping ErrCUDAUnavailable); for "auto" it is logged and "CPU" is returned.
func (r *Runtime) CheckDevice(o Options) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	if err := r.Init(); err != nil {
		return "", err
	}
	if o.Device == DeviceCPU {
		return "CPU", nil
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return "", fmt.Errorf("create session options: %w", err)
	}
	defer so.Destroy()
	if err := appendCUDA(so, o); err != nil {
		return r.fallback(o, err)
	}
	return "CUDA", nil
}

func (r *Runtime) fallback(o Options, err error) (string, error) {
	if o.Device == DeviceCUDA {
		return "", fmt.Errorf("%w (device %d, library %s): %v; install the GPU build with scripts/install-onnxruntime.sh --gpu and set %s, or use --device cpu or auto",
			ErrCUDAUnavailable, o.DeviceID, r.lib, err, EnvLibrary)
	}
	r.log.Warn("CUDA unavailable, falling back to CPU (device auto)", "err", err)
	return "CPU", nil
}

func appendCUDA(so *ort.SessionOptions, o Options) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil { // never ignore: a nil options value crashes later (onnxruntime_go#58)
		return fmt.Errorf("create CUDA provider options: %w", err)
	}
	defer co.Destroy()
	if err := co.Update(o.cudaOptions()); err != nil {
		return fmt.Errorf("set CUDA provider options %v: %w", o.cudaOptions(), err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return fmt.Errorf("append CUDA execution provider: %w", err)
	}
	return nil
}

// Session runs one model. Run serialises calls; use one inference goroutine per session.
type Session struct {
	Path     string
	Input    string
	Output   string
	Provider string // "CPU" or "CUDA"

	mu sync.Mutex
	s  *ort.DynamicAdvancedSession
}

// Open returns the session for the model file at path with the given tensor names and
// options, creating it on first use. With Device "auto" a model that cannot be placed on CUDA
// runs on CPU (logged); with "cuda" that is an error wrapping ErrCUDAUnavailable.
func (r *Runtime) Open(path, input, output string, o Options) (*Session, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := r.Init(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%+v", abs, input, output, o)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("onnx runtime is closed")
	}
	if s, ok := r.sessions[key]; ok {
		return s, nil
	}
	// ONNX Runtime only checks tensor names at the first Run; say it now, with the file's names.
	sig, err := onnx.ReadSignatureFile(abs)
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	if _, ok := sig.Input(input); !ok {
		return nil, fmt.Errorf("open model %s: no input named %q (inputs: %v)", abs, input, sig.Inputs)
	}
	if _, ok := sig.Output(output); !ok {
		return nil, fmt.Errorf("open model %s: no output named %q (outputs: %v)", abs, output, sig.Outputs)
	}
	s, err := r.create(abs, input, output, o)
	if err != nil {
		return nil, err
	}
	r.sessions[key] = s
	return s, nil
}

func (r *Runtime) create(path, input, output string, o Options) (*Session, error) {
	if o.Device != DeviceCPU {
		s, err := r.createOn(path, input, output, o, true)
		if err == nil {
			return s, nil
		}
		if _, ferr := r.fallback(o, err); ferr != nil {
			return nil, ferr
		}
	}
	return r.createOn(path, input, output, o, false)
}

func (r *Runtime) createOn(path, input, output string, o Options, cuda bool) (*Session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("create session options: %w", err)
	}
	defer so.Destroy()
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return nil, fmt.Errorf("set intra-op threads %d: %w", o.Threads, err)
		}
	}
	provider := "CPU"
	if cuda {
		if err := appendCUDA(so, o); err != nil {
			return nil, err
		}
		provider = "CUDA"
	}
	ds, err := ort.NewDynamicAdvancedSession(path, []string{input}, []string{output}, so)
	if err != nil {
		return nil, fmt.Errorf("create %s session for %s: %w", provider, path, err)
	}
	r.log.Info("onnx session ready", "model", filepath.Base(path), "provider", provider)
	return &Session{Path: path, Input: input, Output: output, Provider: provider, s: ds}, nil
}

// Run feeds one float32 tensor of the given shape and returns the output's shape and values
// (copied into Go memory).
func (s *Session) Run(shape []int64, data []float32) ([]int64, []float32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		return nil, nil, fmt.Errorf("input tensor %v: %w", shape, err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		return nil, nil, fmt.Errorf("run %s: %w", filepath.Base(s.Path), err)
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, nil, fmt.Errorf("run %s: output %q is %T, want a float32 tensor", filepath.Base(s.Path), s.Output, outs[0])
	}
	outShape := []int64(t.GetShape().Clone())
	return outShape, append([]float32(nil), t.GetData()...), nil
}
