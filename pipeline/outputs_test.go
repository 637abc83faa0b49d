package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A resumed run trusts a marker only while its outputs are intact: a deleted, truncated or
// altered output re-runs its stage (and those after it) and ends with the same result.
func TestResumeRerunsStageWhoseOutputsChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		reruns [3]int32 // runs of list, square, sum after the resume
		reason string
	}{
		{"deleted", func(t *testing.T, dir string) { rm(t, filepath.Join(dir, "sum", "result.txt")) }, [3]int32{1, 1, 2}, "is missing"},
		{"truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "square", "3.txt"), 0); err != nil {
				t.Fatal(err)
			}
		}, [3]int32{1, 2, 2}, "has 0 bytes"},
		{"same size", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "list", "items.txt"), []byte("1\n2\n4\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, [3]int32{2, 2, 2}, "changed since its stage completed"},
		{"corrupt marker", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "square", MarkerFile), []byte("{\"stage\": "), 0o644); err != nil {
				t.Fatal(err)
			}
		}, [3]int32{1, 2, 2}, filepath.Join("square", MarkerFile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := newTestPipeline(3, 2)
			if _, err, _ := run(t, context.Background(), p, dir, Options{}); err != nil {
				t.Fatal(err)
			}
			want := result(t, dir)
			tc.damage(t, dir)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			if _, err, code := run(t, context.Background(), p, dir, Options{Resume: true, Log: log}); err != nil || code != 0 {
				t.Fatalf("resume: %v %d\n%s", err, code, logs.String())
			}
			got := [3]int32{p.runs[0].Load(), p.runs[1].Load(), p.runs[2].Load()}
			if got != tc.reruns {
				t.Errorf("stage runs %v, want %v", got, tc.reruns)
			}
			if !strings.Contains(logs.String(), tc.reason) || !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("no warning naming %q:\n%s", tc.reason, logs.String())
			}
			if r := result(t, dir); r != want {
				t.Errorf("result after the repair %q, want %q", r, want)
			}
			r, err := NewRunner(p.stages(), Options{RunDir: dir})
			if err != nil || !r.Complete() {
				t.Errorf("not complete after the repair: %v", err)
			}
		})
	}
}

// --from after an upstream output was lost is a halt naming the file, not a run on what is
// left.
func TestFromHaltsWhenUpstreamOutputIsGone(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(4, 1)
	if _, err, _ := run(t, context.Background(), p, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	rm(t, filepath.Join(dir, "square", "2.txt"))
	_, err, code := run(t, context.Background(), p, dir, Options{From: "sum"})
	if code != 1 || err == nil || !strings.Contains(err.Error(), filepath.Join("square", "2.txt")+" is missing") ||
		!strings.Contains(err.Error(), "--from square") {
		t.Fatalf("err %v code %d", err, code)
	}
	if p.runs[2].Load() != 1 {
		t.Error("sum ran on incomplete input")
	}
}

func TestMarkerListsOutputs(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(2, 1)
	if _, err, _ := run(t, context.Background(), p, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	m, ok, err := ReadMarker(dir, "square", Shard{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Path)
		if o.Size <= 0 && o.Path != failuresJournal || len(o.SHA256) != 64 {
			t.Errorf("output %+v", o)
		}
	}
	if strings.Join(names, ",") != "1.txt,2.txt,_failures.jsonl" {
		t.Errorf("outputs %v", names)
	}
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}
