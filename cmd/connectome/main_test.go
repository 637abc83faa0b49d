package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectome/tables"
	"connectome/version"

	"github.com/apache/arrow-go/v18/arrow"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run", "--no-such-flag"}, {"run", "stray"},
		{"run", "--config", "", "--run-dir", "x", "--from", "nope"}, {"run", "--log-format", "xml"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestRunHelpDocumentsEveryFlag(t *testing.T) {
	code, _, help := runCmd("run", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	// Every flag cmdRun defines must appear in its help text with a description.
	src, err := os.ReadFile("run.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`fs\.(?:String|Bool|Int|Int64)?Var\(&?[a-zA-Z.]+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 10 {
		t.Fatalf("found only %d flag definitions", len(names))
	}
	for _, n := range names {
		if !strings.Contains(help, "-"+n[1]) {
			t.Errorf("--help does not document -%s", n[1])
		}
	}
	_ = flag.ErrHelp
}

func TestBadConfigHaltsNamingFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("run_dir: x\nsimilarity:\n  kk: 1\n"), 0o644)
	code, _, stderr := runCmd("run", "--config", path, "--log-format", "text", "--progress", "none")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:3:3") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd("version")
	if code != 0 || !strings.HasPrefix(out, "connectome "+version.Pipeline) {
		t.Fatalf("%d %q", code, out)
	}
}

// TestExternalEmbeddingsMakeAMap runs similarity and report on embedding files made
// elsewhere, in an empty run directory: no cohort, no other stage.
func TestExternalEmbeddingsMakeAMap(t *testing.T) {
	if _, err := os.Stat("../../third_party/web"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("third_party/web missing: run make deps")
		}
		t.Skip("third_party/web missing: run make deps")
	}
	dir := t.TempDir()
	files := writeTestEmbeddings(t, dir)
	runDir := filepath.Join(dir, "run")
	t.Chdir("../..") // config paths are relative to the working directory, as for a user
	// Both files follow one --embeddings, then more flags: the flag package alone would stop.
	code, _, stderr := runCmd("run", "--config", "configs/nlst-sybil.yaml", "--from", "similarity",
		"--embeddings", files[0], files[1], "--run-dir", runDir, "--progress", "none")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	edges, _, err := tables.ReadEdges(filepath.Join(runDir, "similarity", "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 2 * 8 * 5; len(edges) != want {
		t.Fatalf("%d edges, want %d (2 models × 2 kinds × 8 nodes × k 5)", len(edges), want)
	}
	if st, err := os.Stat(filepath.Join(runDir, "report", "index.html")); err != nil || st.Size() == 0 {
		t.Fatalf("no report: %v", err)
	}
}

// writeTestEmbeddings writes two models' embeddings of 8 nodes (dimension 4) under dir, as
// Arrow files made elsewhere would be, and returns their paths.
func writeTestEmbeddings(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for m, model := range []string{"A", "B"} {
		var rows []tables.Embedding
		for i := 0; i < 8; i++ {
			v := []float32{float32(i), float32(m + 1), float32(i % 3), 1}
			rows = append(rows, tables.Embedding{LesionID: fmt.Sprintf("L%d", i), PatientID: fmt.Sprintf("P%d", i), Model: model, Vector: v})
		}
		path := filepath.Join(dir, model+".arrow")
		if err := tables.WriteEmbeddings(path, rows, 4, arrow.Metadata{}); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	return files
}
