package models

import (
	"strings"
	"testing"

	"connectome/internal/testenv"
)

func TestPublishedRegistry(t *testing.T) {
	r, err := Load(testenv.File(t, "configs/models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"CTClipVit": 512, "CTFM": 512, "FMCIB": 4096, "Merlin": 512, "ModelsGen": 4096,
		"PASTA": 1024, "SUPREME": 512, "VISTA3D": 768, "Voco": 3072}
	if len(r.Models) != len(want) {
		t.Fatalf("%d models, want %d", len(r.Models), len(want))
	}
	for name, dim := range want {
		s, err := r.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.EmbeddingDim != dim {
			t.Errorf("%s: dim %d, want %d", name, s.EmbeddingDim, dim)
		}
	}
	clip, _ := r.Get("CTClipVit")
	if got := clip.InputShape(2); got[0] != 2 || got[2] != 60 {
		t.Errorf("CTClipVit input shape %v", got)
	}
}

func TestValidateRejects(t *testing.T) {
	base := "obtain: make models\nmodels:\n  - name: A\n    onnx: a.onnx\n    input: x\n    output: y\n    embedding_dim: 4\n    preprocess: {axcodes: %s, pixdim: [1,1,1], roi: [%s], hu_range: [-1000, 1000], clamp: [0, 1]}\n"
	cases := []struct{ ax, roi, want string }{
		{"RAS", "48,48,48", ""},
		{"RRS", "48,48,48", "axcodes"},
		{"RAS", "47,48,48", "roi"},
		{"ras", "48,48,48", "upper case"},
	}
	for _, c := range cases {
		src := strings.Replace(strings.Replace(base, "%s", c.ax, 1), "%s", c.roi, 1)
		_, err := Parse("m.yaml", []byte(src))
		if c.want == "" && err != nil {
			t.Errorf("%s/%s: %v", c.ax, c.roi, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s/%s: error %v, want it to mention %q", c.ax, c.roi, err, c.want)
		}
	}
	if _, err := Parse("m.yaml", []byte("obtain: x\nmodels:\n  - name: A\n    bogus: 1\n")); err == nil || !strings.Contains(err.Error(), "m.yaml:4") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := Parse("m.yaml", []byte(strings.NewReplacer("obtain: make models\n", "", "%s", "RAS").Replace(strings.Replace(base, "[%s]", "[48,48,48]", 1)))); err == nil || !strings.Contains(err.Error(), "obtain") {
		t.Errorf("missing obtain: %v", err)
	}
}
