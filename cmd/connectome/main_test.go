package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectome/version"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run", "--no-such-flag"}, {"run", "stray"},
		{"run", "--config", "", "--run-dir", "x", "--from", "nope"}, {"run", "--log-format", "xml"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestRunHelpDocumentsEveryFlag(t *testing.T) {
	code, _, help := runCmd("run", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	// Every flag cmdRun defines must appear in its help text with a description.
	src, err := os.ReadFile("run.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`fs\.(?:String|Bool|Int|Int64)?Var\(&?[a-zA-Z.]+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 10 {
		t.Fatalf("found only %d flag definitions", len(names))
	}
	for _, n := range names {
		if !strings.Contains(help, "-"+n[1]) {
			t.Errorf("--help does not document -%s", n[1])
		}
	}
	_ = flag.ErrHelp
}

func TestBadConfigHaltsNamingFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("run_dir: x\nsimilarity:\n  kk: 1\n"), 0o644)
	code, _, stderr := runCmd("run", "--config", path, "--log-format", "text", "--progress", "none")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:3:3") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd("version")
	if code != 0 || !strings.HasPrefix(out, "connectome "+version.Pipeline) {
		t.Fatalf("%d %q", code, out)
	}
}
