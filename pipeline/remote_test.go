package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// namedStage is a stage that does nothing, for selection tests.
type namedStage struct {
	name string
	mode Sharding
}

func (s namedStage) Name() string                        { return s.name }
func (s namedStage) Version() string                     { return "1" }
func (s namedStage) Settings() any                       { return struct{}{} }
func (s namedStage) Run(context.Context, *Context) error { return nil }
func (s namedStage) Sharding() Sharding                  { return s.mode }

// publishingStage publishes everything but the files under its work folder.
type publishingStage struct {
	namedStage
	work string
}

func (s publishingStage) Published(rel string) bool { return !strings.HasPrefix(rel, s.work+"/") }

func TestPullFilter(t *testing.T) {
	stages := []Stage{namedStage{"cohort", ShardNone}, namedStage{"fetch", ShardEach},
		publishingStage{namedStage{"preprocess", ShardEach}, "tensors"},
		publishingStage{namedStage{"embed", ShardEach}, "parts"}, namedStage{"similarity", ShardEither}, namedStage{"report", ShardNone}}
	filter := func(sh Shard, only string) func(string) bool {
		r, err := NewRunner(stages, Options{RunDir: t.TempDir(), Shard: sh, Only: only})
		if err != nil {
			t.Fatal(err)
		}
		return r.pullFilter()
	}
	shard1, shard1Sim, merge, plain := filter(Shard{1, 3}, ""), filter(Shard{1, 3}, "similarity"), filter(AllShards(3), ""), filter(Shard{}, "")
	for _, c := range []struct {
		rel                           string
		shard1, shard1Sim, merge, all bool
	}{
		{"cohort/lesions.arrow", true, true, true, true},
		{"preprocess/tensors/x.npy", false, false, true, true},
		{"manifest.json", false, false, false, false},
		{"failures-shard-0-of-3.arrow", false, false, false, false},
		{"dicom/s/i.dcm", false, false, false, false},
		{"preprocess/shard-1-of-3/tensors/x.npy", true, true, false, false},
		{"preprocess/shard-0-of-3/tensors/x.npy", false, false, false, false},
		{"preprocess/shard-0-of-3/qc/L1.png", false, true, true, true},
		{"preprocess/shard-0-of-3/_SUCCESS.json", true, true, true, true},
		{"preprocess/shard-0-of-3/_failures.jsonl", true, true, true, true},
		{"embed/shard-1-of-3/m.arrow", true, true, true, true},
		{"embed/shard-0-of-3/m.arrow", false, true, true, true},
		{"embed/shard-0-of-3/parts/m/part-000001.arrow", false, false, false, false},
		{"similarity/shard-0-of-3/edges.arrow", false, true, true, true},
		{"similarity/edges.arrow", false, false, true, true},
		{"report/index.html", true, true, true, true},
	} {
		for _, f := range []struct {
			name string
			f    func(string) bool
			want bool
		}{{"shard 1/3", shard1, c.shard1}, {"shard 1/3 similarity", shard1Sim, c.shard1Sim}, {"merge", merge, c.merge}, {"unsharded", plain, c.all}} {
			if got := f.f(c.rel); got != f.want {
				t.Errorf("%s pulls %s: %v, want %v", f.name, c.rel, got, f.want)
			}
		}
	}
}

// memRemote records the engine's calls; Push fails when failPush is set.
type memRemote struct {
	mu       sync.Mutex
	calls    []string
	failPush bool
}

func (m *memRemote) Pull(ctx context.Context, want func(string) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "pull")
	return nil
}
func (m *memRemote) Invalidate(ctx context.Context, rel string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "invalidate "+rel)
	return nil
}
func (m *memRemote) Claim(ctx context.Context, name string, h Holder) (func(context.Context) error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.PID != os.Getpid() {
		return nil, fmt.Errorf("claim by pid %d", h.PID)
	}
	m.calls = append(m.calls, "claim "+name)
	return func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.calls = append(m.calls, "release")
		return nil
	}, nil
}
func (m *memRemote) Push(ctx context.Context, rel string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "push "+rel)
	if m.failPush && rel != "" {
		return errors.New("injected")
	}
	return nil
}

func TestRemoteCalls(t *testing.T) {
	p := newTestPipeline(4, 2)
	dir := t.TempDir()
	rem := &memRemote{}
	if _, err, _ := run(t, context.Background(), p, dir, Options{Remote: rem}); err != nil {
		t.Fatal(err)
	}
	want := "claim _LOCK|pull|invalidate list/_SUCCESS.json|push list/_SUCCESS.json|invalidate square/_SUCCESS.json|invalidate sum/_SUCCESS.json|push square/_SUCCESS.json|push sum/_SUCCESS.json|push |release"
	// square and sum stream together: their order between each other may vary.
	got := strings.Join(rem.calls, "|")
	if len(got) != len(want) || !strings.HasPrefix(got, "claim _LOCK|pull|invalidate list/_SUCCESS.json|push list/_SUCCESS.json|") || !strings.HasSuffix(got, "|push |release") {
		t.Fatalf("calls %s\nwant %s", got, want)
	}

	// A failed push: the stage is not done, here either, and a resumed run re-runs it.
	rem = &memRemote{failPush: true}
	_, err, _ := run(t, context.Background(), p, dir, Options{Remote: rem, Only: "list"})
	if err == nil || !strings.Contains(err.Error(), "upload stage list") {
		t.Fatalf("failed push: %v", err)
	}
	if _, ok, _ := ReadMarker(dir, "list", Shard{}); ok {
		t.Fatal("local marker kept after its upload failed")
	}
	rem = &memRemote{}
	if _, err, _ := run(t, context.Background(), p, dir, Options{Remote: rem, Only: "list", Resume: true}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rem.calls) != "[claim _LOCK pull invalidate list/_SUCCESS.json push list/_SUCCESS.json push  release]" {
		t.Fatalf("resume after a failed push: %v", rem.calls)
	}
	if _, err := os.Stat(filepath.Join(dir, "list", MarkerFile)); err != nil {
		t.Fatal(err)
	}
}
