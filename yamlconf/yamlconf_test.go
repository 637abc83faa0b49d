package yamlconf

import (
	"strings"
	"testing"
)

type inner struct {
	K     int      `yaml:"k"`
	Names []string `yaml:"names"`
}

type outer struct {
	Title string `yaml:"title"`
	Sim   inner  `yaml:"similarity"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, src, wantErr string
	}{
		{"ok", "title: a\nsimilarity:\n  k: 5\n  names: [x, y]\n", ""},
		{"unknown key", "title: a\nsimilarity:\n  kk: 5\n", `cfg.yaml:3:3: unknown field "kk"`},
		{"wrong type", "title: a\nsimilarity:\n  k: five\n", "cfg.yaml:3:6:"},
		{"duplicate key", "title: a\ntitle: b\n", "cfg.yaml:2:1:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o outer
			err := Decode("cfg.yaml", []byte(c.src), &o)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.Sim.K != 5 || len(o.Sim.Names) != 2 {
					t.Fatalf("decoded %+v", o)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want prefix %q", err, c.wantErr)
			}
		})
	}
}
