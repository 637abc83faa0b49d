package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/repopath/repotest"
)

func TestShippedConfigsLoad(t *testing.T) {
	matches, err := filepath.Glob(repotest.File(t, "configs/*.yaml"))
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
		if _, err := Load(m, Overrides{}); err != nil {
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
		{"invalid value", "similarity:\n  k: -1\n", "similarity:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cfg.yaml")
			if err := os.WriteFile(path, []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, Overrides{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	c, err := Load("", Overrides{RunDir: "r", Device: "auto", Workers: 3, Embeddings: []string{"a.arrow"}, CacheDir: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RunDir != "r" || c.Embed.Device != "auto" || c.Workers != 3 || len(c.Similarity.Embeddings) != 1 || c.Fetch.CacheDir != "cache" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	if _, err := Load("", Overrides{Device: "tpu"}); err == nil {
		t.Fatal("device tpu accepted")
	}
}
