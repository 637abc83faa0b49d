package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
	"connectome/stages/report/reporttest"
)

// TestBuiltBinaryRunsAnywhere builds the command and runs it from an empty directory outside
// the repository, as a user who copied the binary would: embeddings made elsewhere become edges
// and a map that renders offline. No config file, models file or graph library is looked up
// beside the repository or the working directory: all of them are built in.
func TestBuiltBinaryRunsAnywhere(t *testing.T) {
	requireGraphLibrary(t)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "connectome")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := t.TempDir()
	files := writeTestEmbeddings(t, data)
	empty := t.TempDir()
	runDir := filepath.Join(data, "run")
	cmd := exec.Command(bin, "run", "--from", "similarity", "--embeddings", files[0], files[1],
		"--run-dir", runDir, "--progress", "none")
	cmd.Dir = empty
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB=") // nothing of the repository
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("connectome run from %s: %v\n%s", empty, err, out)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("the run wrote into the working directory: %v", ents)
	}
	lay := layout.New(runDir, pipeline.Shard{})
	edges, _, err := tables.ReadEdges(lay.Edges())
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 2 * 8 * 5; len(edges) != want {
		t.Fatalf("%d edges, want %d", len(edges), want)
	}
	b := reporttest.New(t)
	b.Open(t, lay.Page(), "")
	if n := reporttest.Eval[int](t, b, `__connectome.nodeCount()`); n != 8 {
		t.Errorf("the page draws %d nodes, want 8", n)
	}
	b.CheckClean(t) // no request left the page, no console error
	if !strings.Contains(string(out), "run finished") {
		t.Errorf("log lacks the end of the run:\n%s", out)
	}
}
