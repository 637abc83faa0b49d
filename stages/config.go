// Package config is the pipeline's YAML config: one section per stage, defaults, strict
// decoding (unknown keys and wrong types name the file and line), validation and the
// command-line overrides.
package stages

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"

	"connectome/internal/gcp"
	"connectome/internal/yamlconf"
	"connectome/pipeline"
	"connectome/stages/cohort"
	"connectome/stages/embed"
	"connectome/stages/fetch"
	"connectome/stages/preprocess"
	"connectome/stages/report"
	"connectome/stages/similarity"
)

// Config is a whole pipeline config file.
type Config struct {
	// RunDir holds every output of the run; gs://bucket/prefix keeps it in Cloud Storage.
	RunDir string `yaml:"run_dir" json:"run_dir"`
	// ModelsFile is the model registry; empty means the one built into the binary (the 9
	// published encoders, configs/models.yaml).
	ModelsFile string `yaml:"models_file,omitempty" json:"models_file,omitempty"`
	// Workers is the default worker count per stage; 0 means the number of CPUs.
	Workers int `yaml:"workers" json:"workers"`
	// Shards splits the run in N shards (design §10; docs/sharding.md): 0 or 1 = one
	// process does everything. Each shard process (`--shard i/N`, or the Cloud Batch and
	// Kubernetes Indexed Job index variables) fetches, preprocesses and embeds its share of
	// the lesions; `--only cohort` plans before them and `--from similarity` merges after.
	Shards int `yaml:"shards" json:"shards"`

	Cohort     cohort.Settings     `yaml:"cohort" json:"cohort"`
	Fetch      fetch.Settings      `yaml:"fetch" json:"fetch"`
	Preprocess preprocess.Settings `yaml:"preprocess" json:"preprocess"`
	Embed      embed.Settings      `yaml:"embed" json:"embed"`
	Similarity similarity.Settings `yaml:"similarity" json:"similarity"`
	Report     report.Settings     `yaml:"report" json:"report"`
}

// DefaultConfig is the config used for every key a file does not set.
func DefaultConfig() Config {
	return Config{
		RunDir:     "runs/nlst-sybil",
		Cohort:     cohort.DefaultSettings(),
		Fetch:      fetch.DefaultSettings(),
		Preprocess: preprocess.DefaultSettings(),
		Embed:      embed.DefaultSettings(),
		Similarity: similarity.DefaultSettings(),
		Report:     report.DefaultSettings(),
	}
}

// Overrides are the command-line flags that replace config values; zero values change nothing.
type Overrides struct {
	RunDir         string
	Device         string
	Workers        int
	Embeddings     []string
	CacheDir       string
	BillingProject string
	MaxBytesBilled int64
	ModelsDir      string
	Shards         int
	// Clinical is report.clinical_file: clinical data for a run from external embeddings.
	Clinical string
}

// LoadConfig reads path over the defaults (path "" means defaults only), applies the overrides
// and validates the result. Relative paths in the file are relative to the file's directory;
// those of the defaults and the overrides, to the working directory.
func LoadConfig(path string, o Overrides) (Config, error) {
	c := DefaultConfig()
	if path != "" {
		if err := yamlconf.DecodeFile(path, &c); err != nil {
			if errors.Is(err, yamlconf.ErrEmpty) {
				return c, fmt.Errorf("%w (omit --config to run on the built-in defaults)", err)
			}
			return c, err
		}
		c.resolvePaths(filepath.Dir(path))
	}
	c.apply(o)
	if err := c.Validate(); err != nil {
		if path != "" {
			return c, fmt.Errorf("%s: %w", path, err)
		}
		return c, err
	}
	return c, nil
}

// resolvePaths makes the file's relative paths relative to dir, the file's directory.
func (c *Config) resolvePaths(dir string) {
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !gcp.IsURL(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, p := range []*string{&c.RunDir, &c.ModelsFile, &c.Cohort.File, &c.Cohort.ClinicalFile, &c.Cohort.DICOMDir,
		&c.Fetch.CacheDir, &c.Embed.ModelsDir, &c.Report.GraphLibrary, &c.Report.ClinicalFile} {
		resolve(p)
	}
	for i := range c.Similarity.Embeddings {
		resolve(&c.Similarity.Embeddings[i])
	}
}

func (c *Config) apply(o Overrides) {
	if o.RunDir != "" {
		c.RunDir = o.RunDir
	}
	if o.Device != "" {
		c.Embed.Device = o.Device
	}
	if o.Workers > 0 {
		c.Workers = o.Workers
	}
	if len(o.Embeddings) > 0 {
		c.Similarity.Embeddings = o.Embeddings
	}
	if o.CacheDir != "" {
		c.Fetch.CacheDir = o.CacheDir
	}
	if o.BillingProject != "" {
		c.Cohort.BillingProject = o.BillingProject
	}
	if o.MaxBytesBilled > 0 {
		c.Cohort.MaxBytesBilled = cohort.ByteSize(o.MaxBytesBilled)
	}
	if o.ModelsDir != "" {
		c.Embed.ModelsDir = o.ModelsDir
	}
	if o.Shards > 0 {
		c.Shards = o.Shards
	}
	if o.Clinical != "" {
		c.Report.ClinicalFile = o.Clinical
	}
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
}

// Validate checks every section; the error names the key, section.key.
func (c *Config) Validate() error {
	if c.RunDir == "" {
		return fmt.Errorf("run_dir: must be set")
	}
	if c.Shards < 0 || c.Shards > pipeline.MaxShards {
		return fmt.Errorf("shards: %d, want 0 (not sharded) or 1..%d", c.Shards, pipeline.MaxShards)
	}
	if len(c.Fetch.Models) > 0 {
		// Preprocess reads the crops of its models; fetch must have planned them.
		want := c.Preprocess.Models
		for _, m := range want {
			if !slices.Contains(c.Fetch.Models, m) {
				return fmt.Errorf("fetch.models must include every model of preprocess.models: %s is missing", m)
			}
		}
		if len(want) == 0 {
			return fmt.Errorf("fetch.models limits the download to %v but preprocess.models is empty (every model): list the same models in both, or neither", c.Fetch.Models)
		}
	}
	checks := []struct {
		name string
		v    interface{ Validate() error }
	}{
		{"cohort", c.Cohort}, {"fetch", c.Fetch}, {"preprocess", c.Preprocess},
		{"embed", c.Embed}, {"similarity", c.Similarity}, {"report", c.Report},
	}
	for _, ch := range checks {
		if err := ch.v.Validate(); err != nil {
			return fmt.Errorf("%s.%w", ch.name, err)
		}
	}
	return nil
}
