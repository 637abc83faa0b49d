package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	if got, want := File(t, "internal", "testenv"), filepath.Join(root, "internal", "testenv"); got != want {
		t.Errorf("File = %q, want %q", got, want)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got := File(t); got != root || filepath.Join(root, "internal", "testenv") != wd {
		t.Errorf("File() = %q, root %q, test dir %q", got, root, wd)
	}
	if got, want := Shared(t, "reference/x.csv"), filepath.Join(filepath.Dir(root), "shared", "reference", "x.csv"); got != want {
		t.Errorf("Shared = %q, want %q", got, want)
	}
}

// TestCommandsDoNotLinkTestHelpers: test helpers (this package, reporttest, onnxrttest,
// gcptest, ...) import testing; no package of ours that the commands link may import it.
func TestCommandsDoNotLinkTestHelpers(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./cmd/...")
	cmd.Dir = Root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	ours := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "connectome/") {
			continue
		}
		ours++
		if slices.Contains(f[1:], "testing") {
			t.Errorf("%s imports testing but is linked into a command", f[0])
		}
	}
	if ours < 20 {
		t.Fatalf("go list found only %d of our packages in the commands", ours)
	}
}

// recordingTB records what Missing asks of a test instead of stopping it.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...) }
func (r *recordingTB) Skipf(f string, a ...any)  { r.skip = fmt.Sprintf(f, a...) }

func TestMissingFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recordingTB{}
	Missing(r, "tool %s missing", "x")
	if r.fatal != "tool x missing (required under CI)" {
		t.Errorf("under CI: fatal %q", r.fatal)
	}
	t.Setenv("CI", "")
	r = &recordingTB{}
	Missing(r, "tool %s missing", "x")
	if r.fatal != "" || r.skip != "tool x missing" {
		t.Errorf("outside CI: fatal %q, skip %q", r.fatal, r.skip)
	}
}
