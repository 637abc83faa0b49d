// Package testenv locates, for tests, the repository and the read-only ../shared folder beside
// it, and the libraries `make deps` downloads into the repository. Production code never looks
// for the repository: the built binary carries or installs what it needs.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the nearest directory at or above the working directory that holds go.mod.
// Tests run in their package's directory, so this is the repository.
func RepoRoot() (string, error) {
	dir, err := filepath.Abs(".")
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

// Root is the repository root; the test fails when there is none.
func Root(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// File is the path of rel (slash- or element-separated) under the repository root.
func File(t testing.TB, rel ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Root(t)}, relParts(rel)...)...)
}

// Shared is the path of rel under ../shared, the folder beside the repository. It does not
// check that the path exists: callers decide whether missing data fails (under CI) or skips.
func Shared(t testing.TB, rel ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Root(t), "..", "shared"}, relParts(rel)...)...)
}

// Missing stops t for want of a prerequisite (a tool, a library, reference data), which the
// message names with how to get it: under CI, where every prerequisite must be there, it
// fails; elsewhere it skips.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+" (required under CI)", args...)
	}
	t.Skipf(format, args...)
}

// ReferencePython is the Python of the tests' reference environment (make reference-venv:
// pydicom with its codec plugins, highdicom), from CONNECTOME_REFERENCE_PYTHON, which make test
// sets; without it the test stops as Missing says.
func ReferencePython(t testing.TB) string {
	t.Helper()
	py := os.Getenv("CONNECTOME_REFERENCE_PYTHON")
	if py == "" {
		Missing(t, "CONNECTOME_REFERENCE_PYTHON is not set: run the test through make test (make reference-venv)")
		return ""
	}
	if _, err := os.Stat(py); err != nil {
		Missing(t, "the reference Python environment: %v (make reference-venv)", err)
	}
	return py
}

// relParts turns "configs/models.yaml" style elements into native path elements.
func relParts(rel []string) []string {
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = filepath.FromSlash(r)
	}
	return out
}
