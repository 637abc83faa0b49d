package repopath

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRoot(t *testing.T) {
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s has no go.mod", root)
	}
	if again, err := Root(filepath.Join(root, "stages", "report")); err != nil || again != root {
		t.Fatalf("from a subdirectory: %q %v", again, err)
	}
	if _, err := Root(t.TempDir()); err == nil {
		t.Fatal("a directory outside any module has a root")
	}
}
