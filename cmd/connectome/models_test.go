package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/encoders"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/stages/embed"
)

// TestModelsCommand runs `connectome models` on the demo encoders: list, verify, and verify
// again after a model file was damaged.
func TestModelsCommand(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "configs", "demo-models.yaml")
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cmdModels(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := run("list", "--models", file, "--models-dir", dir); code != 0 || !strings.Contains(out, "demo-cnn-48") || !strings.Contains(out, " no ") {
		t.Errorf("list before write: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("verify", "--models", file, "--models-dir", dir); code != 1 || !strings.Contains(out, "the demo command (make demo) writes") {
		t.Errorf("verify of missing files must say how to get them: %d %q", code, out)
	}
	reg, err := models.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := encoders.WriteDemoModels(dir, reg); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run("list", "--models", file, "--models-dir", dir); code != 0 || strings.Count(out, " yes ") != 2 || strings.Count(out, " ok") != 2 {
		t.Errorf("list after write: %q", out)
	}
	if code, out, _ := run("list"); code != 0 || strings.Count(out, "\n") != 10 || !strings.Contains(out, "Voco") {
		t.Errorf("list of the built-in registry: %d %q", code, out)
	}
	lib, _ := onnxrt.LibraryPath()
	if _, err := os.Stat(lib); err != nil {
		testenv.Missing(t, "ONNX Runtime not installed (scripts/install-onnxruntime.sh): %v", err)
	}
	if code, out, errs := run("verify", "--models", file, "--models-dir", dir, "--threads", "1"); code != 0 || !strings.Contains(out, "all 2 models verified") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	path := filepath.Join(dir, "demo-cnn-64.onnx")
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	os.WriteFile(path, b, 0o644)
	if code, out, _ := run("verify", "--models", file, "--models-dir", dir, "--model", "demo-cnn-64"); code != 1 || !strings.Contains(out, "PROBLEM  demo-cnn-64: sha256") {
		t.Errorf("verify of a damaged file: %d %q", code, out)
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: %d", code)
	}
	if code, out, _ := run("--help"); code != 0 || !strings.Contains(out, "verify") {
		t.Errorf("help: %d", code)
	}
}

// TestModelsVerifyEmbeddingDim: verify (spelled with --models-file) refuses a graph whose
// embedding dimension is symbolic, or fixed to another size than the models file says, and
// passes the same graph with the dimension declared.
func TestModelsVerifyEmbeddingDim(t *testing.T) {
	lib, err := onnxrt.LibraryPath()
	if err == nil {
		_, err = os.Stat(lib)
	}
	if err != nil {
		testenv.Missing(t, "ONNX Runtime not installed (scripts/install-onnxruntime.sh): %v", err)
	}
	cases := []struct {
		name string
		dim  onnx.Dim // the graph's declared embedding dimension
		want string   // in the output; "" = verified
	}{
		{"static", onnx.Dim{Value: 8}, ""},
		{"symbolic", onnx.Dim{Param: "D"}, `symbolic embedding dimension "D"`},
		{"other size", onnx.Dim{Value: 9}, "has dimension 9, but embedding_dim is 8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			m := encoders.TestEncoder("test-dim", [5]int64{0, 1, 16, 16, 16}, 8, 1)
			m.Graph.Outputs[0].Dims[1] = c.dim
			path := filepath.Join(dir, "test-dim.onnx")
			if err := m.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			sum, err := embed.FileSHA256(path)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "models.yaml")
			yaml := "obtain: written by the test\nmodels:\n  - name: test-dim\n    onnx: test-dim.onnx\n    sha256: " + sum +
				"\n    input: input\n    output: embedding\n    embedding_dim: 8\n    batch_size: 2\n" +
				"    preprocess: {axcodes: RAS, pixdim: [1, 1, 1], roi: [16, 16, 16], hu_range: [-1024, 2048], clamp: [0, 1]}\n"
			if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := cmdModels(context.Background(), []string{"verify", "--models-file", file, "--models-dir", dir, "--threads", "1"}, &out, &errb)
			if c.want == "" {
				if code != 0 || !strings.Contains(out.String(), "all 1 models verified") {
					t.Fatalf("verify: %d %q %q", code, out.String(), errb.String())
				}
				return
			}
			if code != 1 || !strings.Contains(out.String(), c.want) {
				t.Fatalf("verify: %d %q %q, want exit 1 and %q", code, out.String(), errb.String(), c.want)
			}
		})
	}
}
