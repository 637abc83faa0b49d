// Package golden compares test output with the expected files of golden case folders
// (testdata/<case>/), and rewrites them when a test runs with -update. Only tests import it;
// each test package declares its own -update flag and passes its value.
package golden

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// T is the part of testing.TB that Check uses.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// numberList is a JSON array of numbers as MarshalIndent writes it, one number a line.
var numberList = regexp.MustCompile(`\[\s*(-?[0-9][0-9.e+-]*(?:,\s*-?[0-9][0-9.e+-]*)*)\s*\]`)

var space = regexp.MustCompile(`\s+`)

// JSON is v as indented JSON with each list of numbers on one line, and a final newline:
// expected files that read well in a diff.
func JSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	b = numberList.ReplaceAllFunc(b, func(m []byte) []byte {
		return bytes.ReplaceAll(space.ReplaceAll(m, nil), []byte(","), []byte(", "))
	})
	return append(b, '\n'), nil
}

// Check compares got with the file at path; with update it writes got there instead.
func Check(t T, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (the test gave %s)", err, got)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}

// CheckJSON is Check on JSON(v).
func CheckJSON(t T, path string, v any, update bool) {
	t.Helper()
	got, err := JSON(v)
	if err != nil {
		t.Fatal(err)
		return
	}
	Check(t, path, got, update)
}

// ForEach runs f as a subtest named for each case folder: every directory that holds a file
// matching pattern (such as "testdata/*/case.json"), with that file's content. It fails when
// no case matches.
func ForEach(t *testing.T, pattern string, f func(t *testing.T, dir string, input []byte)) {
	t.Helper()
	inputs, err := filepath.Glob(pattern)
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no case matches %s (%v)", pattern, err)
	}
	for _, in := range inputs {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			f(t, dir, data)
		})
	}
}
