package embed

import (
	"encoding/json"
	"strings"
	"testing"

	"connectome/models/onnxrt/onnxrttest"

	"connectome/models"
)

func TestSettingsValidate(t *testing.T) {
	cases := []struct {
		edit func(*Settings)
		want string
	}{
		{func(*Settings) {}, ""},
		{func(s *Settings) { s.Device = "gpu" }, "device"},
		{func(s *Settings) {
			s.Device = "cuda"
			s.CUDNNConvAlgoSearch = "HEURISTIC"
			s.GPUMemLimitBytes = 1 << 30
		}, ""},
		{func(s *Settings) { s.CUDNNConvAlgoSearch = "fast" }, "cudnn_conv_algo_search"},
		{func(s *Settings) { s.BatchSize = -1 }, "batch_size"},
		{func(s *Settings) { s.ModelsDir = "" }, "models_dir"},
		{func(s *Settings) { s.Models = []string{"A", "A"} }, "repeated"},
		{func(s *Settings) { s.ArenaExtendStrategy = "kSameAsRequested" }, ""},
	}
	for i, c := range cases {
		s := DefaultSettings()
		c.edit(&s)
		err := s.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("case %d: err %v, want %q", i, err, c.want)
		}
	}
}

// The config hash follows what changes embeddings, not descriptions or devices.
func TestSettingsHashView(t *testing.T) {
	hash := func(reg *models.Registry, s Settings) string {
		b, err := json.Marshal(New(s, reg, nil).Settings())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	reg, _ := models.Parse("m.yaml", []byte(onnxrttest.TestModelsYAML))
	base := hash(reg, DefaultSettings())
	s := DefaultSettings()
	s.Device, s.Threads, s.ModelsDir = "cuda", 3, "elsewhere"
	reg2, _ := models.Parse("m.yaml", []byte(onnxrttest.TestModelsYAML))
	reg2.Models[0].License, reg2.Models[0].Title = "MIT", "renamed"
	if hash(reg2, s) != base {
		t.Error("device, threads, models_dir or descriptions changed the hash")
	}
	reg3, _ := models.Parse("m.yaml", []byte(onnxrttest.TestModelsYAML))
	reg3.Models[0].SHA256 = "ab"
	s = DefaultSettings()
	s.BatchSize = 4
	for name, h := range map[string]string{"sha256": hash(reg3, DefaultSettings()), "batch": hash(reg, s)} {
		if h == base {
			t.Errorf("%s did not change the hash", name)
		}
	}
	s = DefaultSettings()
	s.Models = []string{"test-conv-b"}
	if hash(reg, s) == base || !strings.Contains(hash(reg, s), "test-conv-b") {
		t.Error("model selection did not change the hash")
	}
}
