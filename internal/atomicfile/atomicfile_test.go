package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "out.txt")
	if err := WriteBytes(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(path, []byte("second")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "second" {
		t.Fatalf("content %q", b)
	}
	assertNoTemps(t, filepath.Dir(path))
}

func TestFailedWriteKeepsOldContentAndNoTemp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.txt")
	if err := WriteBytes(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk on fire")
	err := Write(path, func(w io.Writer) error {
		w.Write([]byte("half of the new"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("a failed write changed the file: %q", b)
	}
	assertNoTemps(t, filepath.Dir(path))
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".out.txt.tmp-123": true, "out.txt": false, ".hidden": false, "x.tmp-1": false,
	} {
		if IsTemp(name) != want {
			t.Errorf("IsTemp(%q) = %v", name, !want)
		}
	}
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if IsTemp(e.Name()) {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestSyncTree(t *testing.T) {
	dir := t.TempDir()
	if err := WriteBytes(filepath.Join(dir, "a", "b", "c.txt"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := SyncTree(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncTree(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncTree of a missing directory: no error")
	}
	if err := SyncDir(filepath.Join(dir, "a", "b", "c.txt", "x")); err == nil || !strings.Contains(err.Error(), "sync directory") {
		t.Errorf("SyncDir of a bad path: %v", err)
	}
}
