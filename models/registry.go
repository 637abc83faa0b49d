// Package models holds the model registry: the specs of the encoders as data (configs/models.yaml,
// built in, or another models file), read by an explicit constructor. models/onnx reads and
// writes the ONNX file format; models/onnxrt runs the models on ONNX Runtime.
package models

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"connectome/configs"
	"connectome/internal/yamlconf"
)

// Preprocess is a model's input preprocessing (preprocessing-spec §3).
type Preprocess struct {
	Axcodes string     `yaml:"axcodes" json:"axcodes"`   // model axis order, e.g. "SPL"
	Pixdim  [3]float64 `yaml:"pixdim" json:"pixdim"`     // mm, applied to the RAS axes
	ROI     [3]int     `yaml:"roi" json:"roi"`           // crop size in voxels (RAS-axis order)
	HURange [2]float64 `yaml:"hu_range" json:"hu_range"` // a_min, a_max
	Clamp   [2]float64 `yaml:"clamp" json:"clamp"`       // b_min, b_max
}

// Spec is one model of the registry.
type Spec struct {
	Name        string `yaml:"name" json:"name"`
	Title       string `yaml:"title" json:"title"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	ONNX        string `yaml:"onnx" json:"onnx"`
	SHA256      string `yaml:"sha256" json:"sha256"`
	// ExternalData names the file beside the ONNX file that holds its weights (ONNX external
	// data, e.g. Voco), with its own checksum; empty when the weights are inside the file.
	ExternalData       string     `yaml:"external_data,omitempty" json:"external_data,omitempty"`
	ExternalDataSHA256 string     `yaml:"external_data_sha256,omitempty" json:"external_data_sha256,omitempty"`
	Input              string     `yaml:"input" json:"input"`
	Output             string     `yaml:"output" json:"output"`
	EmbeddingDim       int        `yaml:"embedding_dim" json:"embedding_dim"`
	BatchSize          int        `yaml:"batch_size" json:"batch_size"`
	Preprocess         Preprocess `yaml:"preprocess" json:"preprocess"`
	Weights            string     `yaml:"weights,omitempty" json:"weights,omitempty"`
	License            string     `yaml:"license,omitempty" json:"license,omitempty"`
	Citation           string     `yaml:"citation,omitempty" json:"citation,omitempty"`
	Reference          string     `yaml:"reference,omitempty" json:"reference,omitempty"`
}

// InputShape is the model's static input shape for a batch of n: (n, 1, R0, R1, R2) in
// model-axis order. All ROIs are cubes today; the axes follow the axcodes permutation.
func (s *Spec) InputShape(n int) []int64 {
	r := s.Preprocess.ModelROI()
	return []int64{int64(n), 1, int64(r[0]), int64(r[1]), int64(r[2])}
}

// ModelROI is the ROI in model-axis order (the RAS-order ROI permuted by the axcodes).
func (p Preprocess) ModelROI() [3]int {
	var out [3]int
	for t, ch := range p.Axcodes {
		out[t] = p.ROI[rasAxis(ch)]
	}
	return out
}

func rasAxis(ch rune) int {
	switch ch {
	case 'R', 'L':
		return 0
	case 'A', 'P':
		return 1
	case 'S', 'I':
		return 2
	}
	return -1
}

// Validate checks the preprocessing parameters.
func (p Preprocess) Validate() error {
	if len(p.Axcodes) != 3 {
		return fmt.Errorf("axcodes %q: want 3 letters", p.Axcodes)
	}
	seen := [3]bool{}
	for _, ch := range strings.ToUpper(p.Axcodes) {
		a := rasAxis(ch)
		if a < 0 || seen[a] {
			return fmt.Errorf("axcodes %q: want one of R/L, A/P, S/I each", p.Axcodes)
		}
		seen[a] = true
	}
	if p.Axcodes != strings.ToUpper(p.Axcodes) {
		return fmt.Errorf("axcodes %q: use upper case", p.Axcodes)
	}
	for a := 0; a < 3; a++ {
		if !(p.Pixdim[a] > 0) {
			return fmt.Errorf("pixdim %v: want positive spacings", p.Pixdim)
		}
		if p.ROI[a] <= 0 || p.ROI[a]%2 != 0 {
			return fmt.Errorf("roi %v: want positive even sizes", p.ROI)
		}
	}
	if !(p.HURange[0] < p.HURange[1]) {
		return fmt.Errorf("hu_range %v: want min < max", p.HURange)
	}
	if !(p.Clamp[0] < p.Clamp[1]) {
		return fmt.Errorf("clamp %v: want min < max", p.Clamp)
	}
	return nil
}

// Registry is the set of models of one models file, in file order.
type Registry struct {
	Path string `yaml:"-"`
	// Obtain says how to get a model's ONNX file when it is missing (shown in the error).
	Obtain string `yaml:"obtain"`
	Models []Spec `yaml:"models"`
}

// Load reads and validates a models file; path "" is the built-in registry of the 9 published
// encoders (configs/models.yaml, embedded in the binary).
func Load(path string) (*Registry, error) {
	if path == "" {
		return Parse(configs.ModelsFile, configs.Models())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read models file: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates models-file content (path is used in messages).
func Parse(path string, data []byte) (*Registry, error) {
	r := &Registry{Path: path}
	if err := yamlconf.Decode(path, data, r); err != nil {
		return nil, err
	}
	return r, r.validate()
}

func (r *Registry) validate() error {
	if len(r.Models) == 0 {
		return fmt.Errorf("%s: no models", r.Path)
	}
	if r.Obtain == "" {
		return fmt.Errorf("%s: obtain is empty: say how to get the models' ONNX files", r.Path)
	}
	seen := map[string]bool{}
	for i := range r.Models {
		s := &r.Models[i]
		if s.Name == "" {
			return fmt.Errorf("%s: model %d has no name", r.Path, i+1)
		}
		if seen[s.Name] {
			return fmt.Errorf("%s: model %s listed twice", r.Path, s.Name)
		}
		seen[s.Name] = true
		if s.EmbeddingDim <= 0 {
			return fmt.Errorf("%s: model %s: embedding_dim must be positive", r.Path, s.Name)
		}
		if s.BatchSize <= 0 {
			s.BatchSize = 1
		}
		if s.Input == "" || s.Output == "" || s.ONNX == "" {
			return fmt.Errorf("%s: model %s: onnx, input and output are required", r.Path, s.Name)
		}
		if err := s.Preprocess.Validate(); err != nil {
			return fmt.Errorf("%s: model %s: %w", r.Path, s.Name, err)
		}
	}
	return nil
}

// Get returns the named model.
func (r *Registry) Get(name string) (*Spec, error) {
	for i := range r.Models {
		if r.Models[i].Name == name {
			return &r.Models[i], nil
		}
	}
	return nil, fmt.Errorf("model %q is not in %s (have %s)", name, r.Path, strings.Join(r.Names(), ", "))
}

// Names lists the model names in file order.
func (r *Registry) Names() []string {
	out := make([]string, len(r.Models))
	for i, m := range r.Models {
		out[i] = m.Name
	}
	return out
}

// Select returns the named models (all when names is empty), sorted by name for stable output.
func (r *Registry) Select(names []string) ([]*Spec, error) {
	var out []*Spec
	if len(names) == 0 {
		for i := range r.Models {
			out = append(out, &r.Models[i])
		}
	} else {
		for _, n := range names {
			s, err := r.Get(n)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
