package stages

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectome/internal/testenv"
	"connectome/internal/yamlconf"
)

// FuzzDecodeConfig: any bytes as a pipeline config either decode and validate or give an
// error; none panics, and none takes long (the limits run before the YAML parser). `go test`
// runs the seeds: the shipped configs and the hostile shapes of issue 20 (testdata/fuzz holds
// more).
func FuzzDecodeConfig(f *testing.F) {
	matches, err := filepath.Glob(testenv.File(f, "configs/*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "run_dir: x\nsimilarity: {k: &k 5}\nworkers: *k\n",
		"run_dir: " + strings.Repeat("[", 200) + "\n",
		"a: &a [x,x,x,x]\nb: &b [*a,*a,*a,*a]\nc: [*b,*b,*b,*b]\n",
		"run_dir: x\n" + strings.Repeat("  ", 600) + "- y\n",
		"cohort:\n  max_bytes_billed: 99999999999999999999\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		c := DefaultConfig()
		err := yamlconf.Decode("fuzz.yaml", data, &c)
		if err == nil {
			_ = c.Validate()
		} else if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
		if len(data) > yamlconf.MaxBytes && !errors.Is(err, yamlconf.ErrTooLarge) {
			t.Fatalf("%d bytes accepted", len(data))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("decoding %d bytes took %v", len(data), d)
		}
	})
}
