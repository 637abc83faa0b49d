package embed

import (
	"fmt"

	"connectome/models/onnxrt"
)

// Settings configure the embed stage. Only Models (with the registry's specs) and BatchSize
// decide the output; the device settings change where and how fast it runs.
type Settings struct {
	// Models to run, by registry name; empty means every model of the registry.
	Models []string `yaml:"models" json:"models"`
	// Device is cpu, cuda (fail at once when the CUDA provider cannot load) or auto (CUDA when
	// it loads, else CPU, logged).
	Device   string `yaml:"device" json:"device"`
	DeviceID int    `yaml:"device_id" json:"device_id"`
	// CUDNNConvAlgoSearch is EXHAUSTIVE (benchmark once per shape: best with our fixed shapes),
	// HEURISTIC or DEFAULT.
	CUDNNConvAlgoSearch string `yaml:"cudnn_conv_algo_search" json:"cudnn_conv_algo_search"`
	// GPUMemLimitBytes caps the CUDA arena; 0 = no limit.
	GPUMemLimitBytes int64 `yaml:"gpu_mem_limit_bytes" json:"gpu_mem_limit_bytes"`
	// ArenaExtendStrategy is kNextPowerOfTwo or kSameAsRequested ("" = ONNX Runtime's default).
	ArenaExtendStrategy string `yaml:"arena_extend_strategy" json:"arena_extend_strategy"`
	// BatchSize overrides every model's batch_size from the models file; 0 keeps those.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// ModelsDir holds the ONNX files named in the models file.
	ModelsDir string `yaml:"models_dir" json:"models_dir"`
	// Threads is ONNX Runtime's CPU intra-op thread count per session; 0 = all cores.
	Threads int `yaml:"threads" json:"threads"`
	// Readers is the number of goroutines reading tensors; 0 = the run's worker count.
	Readers int `yaml:"readers" json:"readers"`

	// PipelineVersion and IDCVersion only go into table metadata; the engine fills them.
	PipelineVersion string `yaml:"-" json:"-"`
	IDCVersion      string `yaml:"-" json:"-"`
}

// DefaultSettings: every model, on CPU, models from weights/.
func DefaultSettings() Settings {
	return Settings{Device: onnxrt.DeviceAuto, CUDNNConvAlgoSearch: "EXHAUSTIVE", ModelsDir: "weights"}
}

// Validate reports a setting that cannot work.
func (s Settings) Validate() error {
	if err := s.runtimeOptions().Validate(); err != nil {
		return err
	}
	if s.BatchSize < 0 || s.BatchSize > 4096 {
		return fmt.Errorf("batch_size = %d, want 0 (per model) or 1..4096", s.BatchSize)
	}
	if s.Readers < 0 {
		return fmt.Errorf("readers = %d, want ≥ 0", s.Readers)
	}
	if s.ModelsDir == "" {
		return fmt.Errorf("models_dir is empty")
	}
	seen := map[string]bool{}
	for _, m := range s.Models {
		if m == "" || seen[m] {
			return fmt.Errorf("models %v: empty or repeated name", s.Models)
		}
		seen[m] = true
	}
	return nil
}

func (s Settings) runtimeOptions() onnxrt.Options {
	return onnxrt.Options{Device: s.Device, DeviceID: s.DeviceID, CUDNNConvAlgoSearch: s.CUDNNConvAlgoSearch,
		GPUMemLimitBytes: s.GPUMemLimitBytes, ArenaExtendStrategy: s.ArenaExtendStrategy, Threads: s.Threads}
}
