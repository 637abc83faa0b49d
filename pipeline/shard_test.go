package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  bool
	}{
		{"0/8", Shard{0, 8}, false}, {"7/8", Shard{7, 8}, false}, {" 2/3 ", Shard{2, 3}, false},
		{"0/1", Shard{0, 1}, false}, {"8/8", Shard{}, true}, {"-1/4", Shard{}, true}, {"1/0", Shard{}, true},
		{"3", Shard{}, true}, {"a/b", Shard{}, true}, {"", Shard{}, true},
	} {
		got, err := ParseShard(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseShard(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s, _ := ParseShard("0/1"); s.Sharded() || s.IsPart() || ShardDir("r", "fetch", s) != filepath.Join("r", "fetch") {
		t.Errorf("0/1 must be an unsharded run: %+v", s)
	}
}

// The shards of any N partition the lesions into contiguous ranges of the sorted ids,
// whatever order the ids come in.
func TestShardsPartitionSortedIDs(t *testing.T) {
	var ids []string
	for i := range 23 {
		ids = append(ids, fmt.Sprintf("L%03d", (i*7)%23)) // a shuffled order
	}
	sorted := slices.Sorted(slices.Values(ids))
	for _, n := range []int{2, 3, 5, 23, 30} {
		seen := map[string]int{}
		prevHi := 0
		for _, sh := range AllShards(n).Each() {
			own := sh.Owns(ids)
			lo, hi := sh.Range(len(ids))
			if lo != prevHi {
				t.Fatalf("N=%d shard %d starts at %d, previous ended at %d", n, sh.Index, lo, prevHi)
			}
			prevHi = hi
			for p, id := range sorted {
				if own(id) != (p >= lo && p < hi) {
					t.Fatalf("N=%d shard %d: owns(%s at %d) = %v, range [%d,%d)", n, sh.Index, id, p, own(id), lo, hi)
				}
				if own(id) {
					seen[id]++
				}
			}
			kept := ShardOf(ids, func(s string) string { return s }, sh)
			if len(kept) != hi-lo {
				t.Fatalf("N=%d shard %d: ShardOf kept %d, want %d", n, sh.Index, len(kept), hi-lo)
			}
		}
		if prevHi != len(ids) || len(seen) != len(ids) {
			t.Fatalf("N=%d: shards cover %d of %d ids", n, len(seen), len(ids))
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("N=%d: %s in %d shards", n, id, c)
			}
		}
	}
}

// shardedStage wraps a test stage with a sharding mode.
type shardedStage struct {
	Stage
	mode Sharding
}

func (s shardedStage) Sharding() Sharding { return s.mode }

func TestShardSelectionAndHashes(t *testing.T) {
	p := newTestPipeline(6, 2)
	stages := []Stage{p.list, shardedStage{p.square, ShardEach}, shardedStage{p.sum, ShardEach}}
	hashes := func(sh Shard) []string {
		r, err := NewRunner(stages, Options{RunDir: t.TempDir(), Shard: sh})
		if err != nil {
			t.Fatalf("shard %v: %v", sh, err)
		}
		return slices.Clone(r.hashes)
	}
	plain, s0, s1, s0of3 := hashes(Shard{}), hashes(Shard{0, 2}), hashes(Shard{1, 2}), hashes(Shard{0, 3})
	if plain[0] != s0[0] || plain[1] == s0[1] {
		t.Errorf("N must enter the per-shard stages' hashes only: plain %.8v, shard %.8v", plain, s0)
	}
	if !slices.Equal(s0, s1) {
		t.Errorf("shards of one run must share their hashes: %.8v vs %.8v", s0, s1)
	}
	if s0[1] == s0of3[1] {
		t.Error("another N must give another hash")
	}
	for _, tc := range []struct {
		sh         Shard
		only, from string
		bad        string
	}{
		{Shard{0, 2}, "list", "", "runs once per run"},
		{AllShards(2), "square", "", "runs per shard"},
		{AllShards(2), "", "", "runs per shard"}, // nothing after the per-shard stages here
	} {
		_, err := NewRunner(stages, Options{RunDir: t.TempDir(), Shard: tc.sh, Only: tc.only, From: tc.from})
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.bad) {
			t.Errorf("shard %v only %q: %v, want a usage error %q", tc.sh, tc.only, err, tc.bad)
		}
	}
}

// Two shards at once in one run directory: each has its own stage directories, markers,
// manifest and failures table; the plan step's cohort is required and shared.
func TestShardsKeepTheirOwnDirectories(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(6, 2)
	stages := []Stage{p.list, shardedStage{p.square, ShardEach}, shardedStage{p.sum, ShardEach}}
	run := func(sh Shard, only string, resume bool) error {
		r, err := NewRunner(stages, Options{RunDir: dir, Shard: sh, Only: only, Resume: resume, Items: itemSource(dir)})
		if err != nil {
			return err
		}
		_, err = r.Run(context.Background())
		return err
	}
	if err := run(Shard{0, 2}, "", false); err == nil || !strings.Contains(err.Error(), "--only list") {
		t.Fatalf("shard before the plan: %v", err)
	}
	if err := run(AllShards(2), "list", false); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := run(Shard{i, 2}, "", false); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	// Re-running shard 0 from scratch clears only its own directories.
	if err := run(Shard{0, 2}, "", false); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		sh := Shard{i, 2}
		for _, st := range []string{"square", "sum"} {
			m, ok, err := ReadMarker(dir, st, sh)
			if err != nil || !ok || m.Shard != sh.String() {
				t.Errorf("%s marker of shard %d: %+v %v %v", st, i, m, ok, err)
			}
		}
		for _, f := range []string{ManifestName(sh), FailuresName(sh)} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("shard %d: %v", i, err)
			}
		}
	}
	if _, ok, _ := ReadMarker(dir, "square", Shard{}); ok {
		t.Error("a shard wrote the unsharded marker")
	}
	if err := clearStageDir(filepath.Join(dir, "square")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ReadMarker(dir, "square", Shard{1, 2}); !ok {
		t.Error("clearing the merge's stage directory removed a shard's")
	}
	if err := checkShardMarkers(dir, stages[1], "other", 2); err == nil || !strings.Contains(err.Error(), "shards 0 (hash") {
		t.Errorf("checkShardMarkers with another hash: %v", err)
	}
	if err := os.Remove(filepath.Join(ShardDir(dir, "sum", Shard{1, 2}), "result.txt")); err != nil {
		t.Fatal(err)
	}
	h := newRunnerHashes(t, stages, Shard{1, 2})
	if err := checkShardMarkers(dir, stages[2], h[2], 2); err == nil || !strings.Contains(err.Error(), "shards 1 (output") ||
		!strings.Contains(err.Error(), "is missing") {
		t.Errorf("checkShardMarkers with a lost output: %v", err)
	}
}

// newRunnerHashes returns the config hashes a runner of the shard computes for stages.
func newRunnerHashes(t *testing.T, stages []Stage, sh Shard) []string {
	t.Helper()
	r, err := NewRunner(stages, Options{RunDir: t.TempDir(), Shard: sh})
	if err != nil {
		t.Fatal(err)
	}
	return r.hashes
}
