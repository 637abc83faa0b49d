package pipeline

import (
	"context"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Remote is a run directory that lives elsewhere (a Cloud Storage prefix, internal/gcp).
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
	// Claim makes this process the current attempt at its part of the run directory, named
	// name (LockName of its shard), taking over from any earlier attempt. From then on Push
	// and Invalidate fail, naming the later attempt, once another has claimed the part.
	// release gives the claim up at the end of the run.
	Claim(ctx context.Context, name string, h Holder) (release func(context.Context) error, err error)
}

// relMarker is the marker of the stage directory dir, relative to the run directory.
func (r *Runner) relMarker(dir string) string {
	rel, err := filepath.Rel(r.opt.RunDir, filepath.Join(dir, MarkerFile))
	if err != nil {
		return filepath.ToSlash(filepath.Join(dir, MarkerFile))
	}
	return filepath.ToSlash(rel)
}

// pullFilter says which objects of the remote run directory this process needs. Top-level
// files (manifests, failures tables) are per process and rebuilt, never pulled. Of the stage
// directories: those of the stages that run once per run; this process's own shard
// directories (to resume, or to read upstream outputs); of the other shards, every marker and
// failure journal, and their published outputs (see Publisher) when this process reads them:
// the merge, an unsharded run, or a shard that runs a ShardEither stage over all shards.
func (r *Runner) pullFilter() func(rel string) bool {
	sh := r.opt.Shard
	byName := map[string]Stage{}
	for _, s := range r.stages {
		byName[s.Name()] = s
	}
	readsOthers := !sh.IsPart() || slices.ContainsFunc(r.stages[r.from:r.to+1], func(s Stage) bool {
		return shardingOf(s) == ShardEither
	})
	return func(rel string) bool {
		top, rest, nested := strings.Cut(rel, "/")
		s, ok := byName[top]
		if !nested || !ok {
			return false
		}
		sub, inSub, _ := strings.Cut(rest, "/")
		switch {
		case inSub == "" || !IsShardDir(sub):
			// The stage's own directory: a shard process never writes those of a stage that
			// runs per shard, so reading them is safe.
			return !sh.IsPart() || shardingOf(s) == ShardNone
		case sh.IsPart() && sub == sh.Name():
			return true
		case path.Base(rel) == MarkerFile || path.Base(rel) == failuresJournal:
			return true
		case !readsOthers || inSub == startedFile:
			return false
		}
		p, ok := s.(Publisher)
		return !ok || p.Published(inSub)
	}
}
