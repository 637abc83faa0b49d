package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Shard says which part of a sharded run a process does. A run split in N shards has a plan
// step (the stages before the per-shard ones, once), N shard processes (the ShardEach stages
// over their own items, each in its own stage directories) and a merge (the stages after
// them, over every shard's outputs).
//
//   - Shard{} (Count 0 or 1): the run is not sharded.
//   - Shard{Index: i, Count: N}, 0 ≤ i < N: shard process i.
//   - Shard{Index: -1, Count: N} (AllShards(N)): a process of a sharded run that is no shard:
//     the plan step and the merge.
//
// Items are split by their position in the sorted order of their ids: shard i gets positions
// [i·n/N, (i+1)·n/N), a contiguous range. The split depends only on the items and N (not on
// worker counts or timing), so every process agrees on it and a re-run shard redoes exactly
// its own items; contiguous ranges also keep items with a common id prefix together (for the
// connectome, a patient's lesions, so that a series is fetched once).
type Shard struct{ Index, Count int }

// AllShards is the view of a sharded run's plan step and merge.
func AllShards(n int) Shard { return Shard{Index: -1, Count: n} }

// Sharded reports whether the run is split in more than one shard.
func (s Shard) Sharded() bool { return s.Count > 1 }

// IsPart reports whether this process is one shard of a sharded run.
func (s Shard) IsPart() bool { return s.Count > 1 && s.Index >= 0 }

// Name is the shard's directory and file name part, "shard-i-of-N".
func (s Shard) Name() string { return fmt.Sprintf("shard-%d-of-%d", s.Index, s.Count) }

// PartName is the name of the shard's part file, "part-i-of-N.arrow".
func (s Shard) PartName() string { return fmt.Sprintf("part-%d-of-%d.arrow", s.Index, s.Count) }

// String is "i/N", or "none" for an unsharded run, or "all N" for the merge view.
func (s Shard) String() string {
	switch {
	case !s.Sharded():
		return "none"
	case s.Index < 0:
		return fmt.Sprintf("all %d", s.Count)
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Each returns the N shards of a sharded run, in order.
func (s Shard) Each() []Shard {
	out := make([]Shard, 0, s.Count)
	for i := range s.Count {
		out = append(out, Shard{Index: i, Count: s.Count})
	}
	return out
}

// Range is the shard's positions [lo, hi) among n ordered items; all of them when the
// process is not one shard.
func (s Shard) Range(n int) (lo, hi int) {
	if !s.IsPart() {
		return 0, n
	}
	return s.Index * n / s.Count, (s.Index + 1) * n / s.Count
}

// Owns returns the membership test of the shard over ids (the run's item ids, in any
// order; duplicates count once): the ids at the shard's positions in sorted order. When the
// process is not one shard, every id is owned.
func (s Shard) Owns(ids []string) func(id string) bool {
	if !s.IsPart() {
		return func(string) bool { return true }
	}
	sorted := slices.Compact(slices.Sorted(slices.Values(ids)))
	lo, hi := s.Range(len(sorted))
	set := make(map[string]bool, hi-lo)
	for _, id := range sorted[lo:hi] {
		set[id] = true
	}
	return func(id string) bool { return set[id] }
}

// ParseShard parses "i/N" (0 ≤ i < N, 1 ≤ N ≤ MaxShards).
func ParseShard(v string) (Shard, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(v), "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/N, for example 0/8", v)
	}
	return NewShard(i, n)
}

// MaxShards bounds N: beyond it the per-shard overhead (reading the plan, opening sessions)
// dominates.
const MaxShards = 100000

// NewShard checks i and n.
func NewShard(i, n int) (Shard, error) {
	if n < 1 || n > MaxShards {
		return Shard{}, fmt.Errorf("shard count %d: want 1..%d", n, MaxShards)
	}
	if i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard index %d: want 0..%d for %d shards", i, n-1, n)
	}
	return Shard{Index: i, Count: n}, nil // n = 1 is an unsharded run
}

// Sharding is how a stage takes part in a sharded run.
type Sharding int

const (
	// ShardNone: the stage runs once per run, never in a shard process.
	ShardNone Sharding = iota
	// ShardEach: the stage runs in every shard process over the shard's items, never in the
	// merge.
	ShardEach
	// ShardEither: the stage runs once over all shards' outputs in the merge, or in each shard
	// process over the shard's part of the work, which the merge then gathers.
	ShardEither
)

// ShardAware is implemented by stages that take part in sharded runs; other stages are
// ShardNone.
type ShardAware interface{ Sharding() Sharding }

func shardingOf(s Stage) Sharding {
	if sa, ok := s.(ShardAware); ok {
		return sa.Sharding()
	}
	return ShardNone
}

// ShardDir is a stage's directory for a process: RunDir/<stage>/shard-i-of-N for one shard,
// RunDir/<stage> otherwise. Shards never share a stage directory, so the engine's clearing of
// a (re)started stage cannot touch another shard's work.
func ShardDir(runDir, stage string, s Shard) string {
	if s.IsPart() {
		return filepath.Join(runDir, stage, s.Name())
	}
	return filepath.Join(runDir, stage)
}

var shardDirName = regexp.MustCompile(`^shard-[0-9]+-of-[0-9]+$`)

// IsShardDir reports whether name is a shard's directory inside a stage directory (Shard.Name).
func IsShardDir(name string) bool { return shardDirName.MatchString(name) }

// clearStageDir empties dir, keeping the shard directories inside it: the merge's stage
// directory holds the shards' own ones, which are theirs to clear.
func clearStageDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && IsShardDir(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// checkShardMarkers checks that every shard completed stage s with config hash want, its
// published outputs present (see outputsPresent); the error names the missing, mismatched
// and broken shards.
func checkShardMarkers(runDir string, s Stage, want string, n int) error {
	stage := s.Name()
	published := func(rel string) bool {
		p, ok := s.(Publisher)
		return !ok || rel == failuresJournal || p.Published(rel)
	}
	var missing, other, broken []string
	for _, sh := range AllShards(n).Each() {
		m, ok, err := ReadMarker(runDir, stage, sh)
		switch {
		case err != nil:
			broken = append(broken, fmt.Sprintf("%d (%v)", sh.Index, err))
		case !ok:
			missing = append(missing, strconv.Itoa(sh.Index))
		case m.ConfigHash != want:
			other = append(other, fmt.Sprintf("%d (hash %.12s)", sh.Index, m.ConfigHash))
		default:
			if err := outputsPresent(ShardDir(runDir, stage, sh), m, published); err != nil {
				broken = append(broken, fmt.Sprintf("%d (%v)", sh.Index, err))
			}
		}
	}
	var msgs []string
	if len(missing) > 0 {
		msgs = append(msgs, fmt.Sprintf("shards %s of %d have not completed it", strings.Join(missing, ", "), n))
	}
	if len(other) > 0 {
		msgs = append(msgs, fmt.Sprintf("shards %s ran with a different config (now %.12s)", strings.Join(other, ", "), want))
	}
	if len(broken) > 0 {
		msgs = append(msgs, fmt.Sprintf("the markers of shards %s do not hold", strings.Join(broken, ", ")))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("stage %s in %s: %s: run those shards (--shard i/%d) first", stage, runDir, strings.Join(msgs, "; "), n)
	}
	return nil
}

// ShardOf keeps the items of xs that the shard owns (see Owns), in their order; all of them
// when the process is not one shard. id gives an item's id.
func ShardOf[T any](xs []T, id func(T) string, s Shard) []T {
	if !s.IsPart() {
		return xs
	}
	ids := make([]string, len(xs))
	for i, x := range xs {
		ids[i] = id(x)
	}
	own := s.Owns(ids)
	out := make([]T, 0, len(xs)/s.Count+1)
	for _, x := range xs {
		if own(id(x)) {
			out = append(out, x)
		}
	}
	return out
}
