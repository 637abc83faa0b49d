package repotest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPaths(t *testing.T) {
	root := Root(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s has no go.mod", root)
	}
	if got, want := File(t, "configs/models.yaml"), filepath.Join(root, "configs", "models.yaml"); got != want {
		t.Errorf("File = %q, want %q", got, want)
	}
	if got, want := File(t, "repopath", "repotest"), filepath.Join(root, "repopath", "repotest"); got != want {
		t.Errorf("File = %q, want %q", got, want)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got := File(t); got != root || filepath.Join(root, "repopath", "repotest") != wd {
		t.Errorf("File() = %q, root %q, test dir %q", got, root, wd)
	}
	if got, want := Shared(t, "reference/x.csv"), filepath.Join(filepath.Dir(root), "shared", "reference", "x.csv"); got != want {
		t.Errorf("Shared = %q, want %q", got, want)
	}
}

// TestOnlyTestsImport: this package and reporttest import testing, which must not reach the
// program; only _test.go files may import them.
func TestOnlyTestsImport(t *testing.T) {
	root := Root(t)
	banned := []string{`"connectome/repopath/repotest"`, `"connectome/stages/report/reporttest"`}
	checked := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "third_party" || n == "node_modules" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range banned {
			if strings.Contains(string(b), imp) {
				t.Errorf("%s imports %s outside a test", p, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no Go files found under the repository root")
	}
}
