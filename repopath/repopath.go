// Package repopath finds the repository a program or test runs in, for the files that live
// beside the code: the downloaded libraries under third_party/, configs/, and ../shared/.
package repopath

import (
	"fmt"
	"os"
	"path/filepath"
)

// Root returns the nearest directory at or above dir that holds go.mod.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
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
