package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestJSONPutsNumberListsOnOneLine(t *testing.T) {
	got, err := JSON(map[string]any{"p": []float64{1, -2.5, 3e-7}, "s": []string{"a", "b"}, "n": 4})
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"n\": 4,\n  \"p\": [1, -2.5, 3e-7],\n  \"s\": [\n    \"a\",\n    \"b\"\n  ]\n}\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCheckWritesThenCompares(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.json")
	CheckJSON(t, path, []int{1, 2}, true)
	CheckJSON(t, path, []int{1, 2}, false)
	var r recorder
	CheckJSON(&r, path, []int{1, 3}, false)
	if r.errors != 1 {
		t.Errorf("a differing value gave %d errors, want 1", r.errors)
	}
}

// recorder counts the failures Check reports.
type recorder struct{ errors int }

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }
func (r *recorder) Fatal(...any)          { r.errors++ }
func (r *recorder) Fatalf(string, ...any) { r.errors++ }

func TestForEachRunsEveryCase(t *testing.T) {
	root := t.TempDir()
	for _, c := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, c, "case.json"), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	ForEach(t, filepath.Join(root, "*", "case.json"), func(t *testing.T, dir string, input []byte) {
		seen[filepath.Base(dir)] = string(input)
	})
	if len(seen) != 2 || seen["a"] != "a" || seen["b"] != "b" {
		t.Errorf("cases seen: %v", seen)
	}
}
