package stages

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

func TestShippedConfigsLoad(t *testing.T) {
	matches, err := filepath.Glob(testenv.File(t, "configs/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range matches {
		base := filepath.Base(m)
		if strings.Contains(base, "models") || strings.Contains(base, "labels") {
			continue // model registries and code tables, not pipeline configs
		}
		n++
		if _, err := LoadConfig(m, Overrides{}); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
	if n == 0 {
		t.Fatal("no pipeline config found under configs/")
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown top key", "run_dir: r\nbogus: 1\n", "cfg.yaml:2:1"},
		{"unknown nested key", "similarity:\n  k: 5\n  kk: 3\n", `cfg.yaml:3:3: unknown field "kk"`},
		{"wrong type", "similarity:\n  k: many\n", "cfg.yaml:2:6"},
		{"invalid value", "similarity:\n  k: -1\n", "cfg.yaml: similarity.k = -1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cfg.yaml")
			if err := os.WriteFile(path, []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path, Overrides{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	c, err := LoadConfig("", Overrides{RunDir: "r", Device: "auto", Workers: 3, Embeddings: []string{"a.arrow"}, CacheDir: "cache", Clinical: "clin.csv"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RunDir != "r" || c.Embed.Device != "auto" || c.Workers != 3 || len(c.Similarity.Embeddings) != 1 || c.Fetch.CacheDir != "cache" || c.Report.ClinicalFile != "clin.csv" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	if _, err := LoadConfig("", Overrides{Device: "tpu"}); err == nil {
		t.Fatal("device tpu accepted")
	}
}

// TestClinicalFileKey: report.clinical_file in a config is relative to the config file; the
// --clinical flag (an override) is relative to the working directory and wins.
func TestClinicalFileKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.yaml")
	if err := os.WriteFile(path, []byte("run_dir: r\nreport:\n  clinical_file: data/clinical.csv\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data", "clinical.csv"); c.Report.ClinicalFile != want {
		t.Errorf("report.clinical_file = %q, want %q (relative to the config)", c.Report.ClinicalFile, want)
	}
	c, err = LoadConfig(path, Overrides{Clinical: "mine.parquet"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Report.ClinicalFile != "mine.parquet" {
		t.Errorf("--clinical gives %q, want mine.parquet", c.Report.ClinicalFile)
	}
}

// TestShippedConfigIsTheDefault: configs/nlst-sybil.yaml lists the built-in defaults, with its
// paths relative to itself, so loading it from the repository root equals running without
// --config there.
func TestShippedConfigIsTheDefault(t *testing.T) {
	t.Chdir(testenv.Root(t))
	def, err := LoadConfig("", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	file, err := LoadConfig(filepath.Join("configs", "nlst-sybil.yaml"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Config{&def, &file} { // `models: []` in the file documents the default, nil
		c.Fetch.Models, c.Preprocess.Models, c.Embed.Models = nil, nil, nil
	}
	if !reflect.DeepEqual(def, file) {
		t.Errorf("configs/nlst-sybil.yaml differs from the built-in defaults:\n file %+v\n  def %+v", file, def)
	}
	demo, err := LoadConfig(filepath.Join("configs", "demo.yaml"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if demo.RunDir != filepath.Join("runs", "demo") || demo.ModelsFile != filepath.Join("configs", "demo-models.yaml") {
		t.Errorf("demo.yaml paths are not relative to it: run_dir %s, models_file %s", demo.RunDir, demo.ModelsFile)
	}
}
