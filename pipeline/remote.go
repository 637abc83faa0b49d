package pipeline

import (
	"context"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Remote is a run directory that lives elsewhere (a Cloud Storage prefix, package rundir).
// Stages always work on the local working copy, Options.RunDir; the runner syncs it with the
// remote at stage boundaries, so that the rules of a local run directory hold in the bucket
// too: every file is complete before its name appears, and a stage (or a shard's part of it)
// is done only once its marker object exists, which is uploaded after all of the stage's
// files.
//
// Paths are relative to the run directory, slash-separated ("embed/shard-0-of-4/_SUCCESS.json").
// The stages of a streaming segment call Invalidate and Push concurrently.
type Remote interface {
	// Pull copies into the working copy the remote objects that want accepts, and removes the
	// working copy's markers (MarkerFile) that want accepts but that have no object: a marker
	// left by an upload that did not finish does not count.
	Pull(ctx context.Context, want func(rel string) bool) error
	// Invalidate removes the marker object rel: its stage is running again.
	Invalidate(ctx context.Context, rel string) error
	// Push uploads every file of the working copy that changed since it was last pulled or
	// pushed, markers excepted, and then the marker rel, when not "", last.
	Push(ctx context.Context, rel string) error
}

// relMarker is the marker of the stage directory dir, relative to the run directory.
func (r *Runner) relMarker(dir string) string {
	rel, err := filepath.Rel(r.opt.RunDir, filepath.Join(dir, MarkerFile))
	if err != nil {
		return filepath.ToSlash(filepath.Join(dir, MarkerFile))
	}
	return filepath.ToSlash(rel)
}

// pullFilter says which objects of the remote run directory this process needs: the cohort;
// its own stage directories (to resume or to read upstream outputs); for a shard, of the
// other shards only their markers (and their parts when it computes similarity rows); for
// the merge and an unsharded run, everything but the per-shard work files, of which only
// the markers and failure journals count. Manifests and failures tables are per process and
// rebuilt, never pulled.
func (r *Runner) pullFilter() func(rel string) bool {
	sh := r.opt.Shard
	byName := map[string]Stage{}
	for _, s := range r.stages {
		byName[s.Name()] = s
	}
	simSelected := slices.ContainsFunc(r.stages[r.from:r.to+1], func(s Stage) bool { return s.Name() == StageSimilarity })
	return func(rel string) bool {
		top, rest, nested := strings.Cut(rel, "/")
		if !nested {
			return false // manifest*.json, failures*.arrow: this process writes its own
		}
		base := path.Base(rel)
		if s, ok := byName[top]; ok {
			sub, _, inSub := strings.Cut(rest, "/")
			inShard := inSub && shardDirName.MatchString(sub)
			switch {
			case !inShard:
				// A stage directory of its own (cohort, the merge's similarity and report);
				// a shard process never writes those, so reading them is safe.
				return !sh.IsPart() || shardingOf(s) == ShardNone
			case sh.IsPart() && sub == sh.Name():
				return true
			case base == MarkerFile:
				return true
			case sh.IsPart():
				return false
			case shardingOf(s) == ShardEither:
				return true // similarity's edge parts, gathered by the merge
			default:
				return base == failuresJournal
			}
		}
		switch {
		case !sh.IsPart():
			return true // embeddings/, qc/
		case top == "embeddings":
			return simSelected || base == sh.PartName()
		}
		return false
	}
}
