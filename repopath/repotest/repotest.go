// Package repotest locates the repository and the read-only ../shared folder beside it, for
// tests. It imports testing, so only _test.go files may import it.
package repotest

import (
	"path/filepath"
	"testing"

	"connectome/repopath"
)

// Root is the repository root (the directory holding go.mod) above the test's working
// directory; the test fails when there is none.
func Root(t testing.TB) string {
	t.Helper()
	root, err := repopath.Root(".")
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

// relParts turns "configs/models.yaml" style elements into native path elements.
func relParts(rel []string) []string {
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = filepath.FromSlash(r)
	}
	return out
}
