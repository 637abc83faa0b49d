package yamlconf

import (
	"errors"
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

// TestLimits: a file over a limit is refused before the decoder sees it, quickly and with
// the limit in the message; a file just inside them decodes.
func TestLimits(t *testing.T) {
	bomb := "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
		"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	cases := []struct{ name, src, want string }{
		{"flow nesting", "title: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n", "cfg.yaml:1:72: nested more than 64 levels deep"},
		{"block nesting", "title:\n  " + strings.Repeat("- ", 100_000) + "x\n", "cfg.yaml:2:1001: block structure past column 1000"},
		{"mapping nesting", "title: " + strings.Repeat("{a: ", 100) + "1" + strings.Repeat("}", 100) + "\n", "nested more than 64 levels deep"},
		{"alias bomb", bomb, "cfg.yaml: more than 100000 nodes with its aliases expanded"},
		{"size", "title: a\n" + strings.Repeat("# padding\n", MaxBytes/10), "cfg.yaml: more than 1048576 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o outer
			err := Decode("cfg.yaml", []byte(c.src), &o)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	// Within the limits: an alias to a scalar and 60 levels of flow nesting decode.
	var v struct {
		Title string `yaml:"title"`
		Other string `yaml:"other"`
		Deep  any    `yaml:"deep"`
	}
	src := "title: &t hello\nother: *t\ndeep: " + strings.Repeat("[", 60) + strings.Repeat("]", 60) + "\n"
	if err := Decode("cfg.yaml", []byte(src), &v); err != nil || v.Other != "hello" {
		t.Fatalf("%+v %v", v, err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, src := range []string{"", "\n", "# only a comment\n", "---\n", "null\n", "~\n"} {
		var o outer
		err := Decode("cfg.yaml", []byte(src), &o)
		if !errors.Is(err, ErrEmpty) || !strings.HasPrefix(err.Error(), "cfg.yaml: the file is empty") {
			t.Errorf("%q: %v", src, err)
		}
	}
}
