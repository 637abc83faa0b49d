package main

import (
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/gcp/gcptest"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// TestRunDirInBucket runs similarity and report with --run-dir gs://… against a fake GCS
// (STORAGE_EMULATOR_HOST): the outputs and markers land in the bucket, and a second process
// with another working copy resumes from the bucket alone.
func TestRunDirInBucket(t *testing.T) {
	requireGraphLibrary(t)
	srv, err := gcptest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Fake.CreateBucket("bkt")
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL())
	dir := t.TempDir()
	files := writeTestEmbeddings(t, dir)
	t.Chdir("../..")
	run := func(work string, extra ...string) (int, string) {
		args := append([]string{"run", "--config", "configs/nlst-sybil.yaml", "--from", "similarity",
			"--embeddings", files[0] + "," + files[1], "--run-dir", "gs://bkt/runs/one", "--work-dir", work, "--progress", "none"}, extra...)
		code, _, stderr := runCmd(args...)
		return code, stderr
	}
	if code, stderr := run(filepath.Join(dir, "work1")); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	for _, obj := range []string{"similarity/edges.arrow", "similarity/" + pipeline.MarkerFile, "report/index.html", "report/" + pipeline.MarkerFile, "manifest.json"} {
		if _, err := srv.Fake.GetObject("bkt", "runs/one/"+obj); err != nil {
			t.Errorf("object %s: %v", obj, err)
		}
	}
	code, stderr := run(filepath.Join(dir, "work2"), "--resume", "--log-level", "info")
	if code != 0 || strings.Count(stderr, "stage already complete") != 2 {
		t.Fatalf("resume from the bucket on another working copy: exit %d, want both stages complete:\n%s", code, stderr)
	}
	edges, _, err := tables.ReadEdges(filepath.Join(dir, "work2", "similarity", "edges.arrow"))
	if err != nil || len(edges) != 2*2*8*5 {
		t.Fatalf("pulled edges: %d rows, %v", len(edges), err)
	}
}

func TestRunDirBadURLIsUsageError(t *testing.T) {
	t.Chdir("../..")
	code, _, stderr := runCmd("run", "--config", "configs/nlst-sybil.yaml", "--run-dir", "gs://bkt/../x", "--progress", "none")
	if code != 2 || !strings.Contains(stderr, "..") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}
