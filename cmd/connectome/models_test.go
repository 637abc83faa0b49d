package main

import (
	"bytes"
	"connectome/repopath"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/models/onnxrt"
)

// TestModelsCommand runs `connectome models` on the demo encoders: write-demo, list, verify,
// and verify again after a model file was damaged.
func TestModelsCommand(t *testing.T) {
	root, err := repopath.Root(".")
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
	if code, out, errs := run("write-demo", "--models", file, "--models-dir", dir); code != 0 || strings.Count(out, "ok ") != 2 {
		t.Fatalf("write-demo: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("list", "--models", file, "--models-dir", dir); code != 0 || strings.Count(out, " yes ") != 2 || strings.Count(out, " ok") != 2 {
		t.Errorf("list after write: %q", out)
	}
	if code, out, _ := run("write-demo", "--models", filepath.Join(root, "configs", "models.yaml"), "--models-dir", dir); code != 1 {
		t.Errorf("write-demo of the published models must fail: %d %q", code, out)
	}
	lib, _ := onnxrt.LibraryPath()
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ONNX Runtime is required under CI: %v", err)
		}
		t.Skipf("ONNX Runtime not installed (scripts/install-onnxruntime.sh): %v", err)
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
	if code, out, _ := run("--help"); code != 0 || !strings.Contains(out, "write-demo") {
		t.Errorf("help: %d", code)
	}
}
