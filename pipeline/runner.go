package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/goccy/go-yaml"
	"golang.org/x/sync/errgroup"

	"connectome/internal/atomicfile"
)

// Options configure a run.
type Options struct {
	RunDir         string
	From, To, Only string
	Resume         bool
	// RetryFailed makes a resumed run re-run complete stages that recorded item failures,
	// retrying just the failed items (completed items are kept).
	RetryFailed bool
	Workers     int
	Log         *slog.Logger
	Progress    Progress
	// PipelineVersion goes into every marker.
	PipelineVersion string
	// TableMetadata is the schema metadata of failures.arrow (the caller's versions).
	TableMetadata map[string]string
	// StreamBuffer is the capacity of the channel between two streaming stages.
	StreamBuffer int
	// Items lists the run's items for the streaming stages; required when one of them runs.
	Items ItemSource
	// Manifest content supplied by the caller.
	Command  []string
	Config   any
	Versions map[string]string
	Models   any
	// Shard is this process's part of a sharded run (see Shard); the zero value is an
	// unsharded run.
	Shard Shard
	// Remote, when set, is where the run directory really lives (a bucket); RunDir is then a
	// local working copy that the runner syncs with it at stage boundaries (see Remote).
	Remote Remote
}

// Runner runs a chain of stages over one run directory.
type Runner struct {
	stages []Stage
	names  []string
	hashes []string
	opt    Options
	from   int
	to     int

	mu       sync.Mutex
	manifest Manifest

	itemsOnce sync.Once
	items     []Item
	itemsErr  error

	// release gives up the claim on a remote run directory.
	release func(context.Context) error
}

// NewRunner checks the stage chain (in run order, each name once) and the selection flags.
func NewRunner(stages []Stage, opt Options) (*Runner, error) {
	if len(stages) == 0 {
		return nil, errors.New("no stages")
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Progress == nil {
		opt.Progress = quietProgress{}
	}
	if opt.StreamBuffer <= 0 {
		opt.StreamBuffer = 64
	}
	if opt.Workers <= 0 {
		opt.Workers = 1
	}
	if opt.RunDir == "" {
		return nil, &UsageError{"no run directory (set --run-dir or run_dir in the config)"}
	}
	r := &Runner{stages: stages, opt: opt}
	for _, s := range stages {
		if slices.Contains(r.names, s.Name()) {
			return nil, fmt.Errorf("stage %s listed twice", s.Name())
		}
		r.names = append(r.names, s.Name())
	}
	if err := r.selectStages(); err != nil {
		return nil, err
	}
	prev := ""
	for _, s := range stages {
		h, err := configHash(s, prev, opt.Shard)
		if err != nil {
			return nil, err
		}
		r.hashes = append(r.hashes, h)
		prev = h
	}
	return r, nil
}

// selectStages sets from and to from --from, --to, --only and the shard.
func (r *Runner) selectStages() error {
	o := r.opt
	pos := func(flag, name string) (int, error) {
		i := slices.Index(r.names, name)
		if i < 0 {
			return 0, &UsageError{fmt.Sprintf("--%s %q: unknown stage (stages: %s)", flag, name, strings.Join(r.names, ", "))}
		}
		return i, nil
	}
	r.from, r.to = 0, len(r.stages)-1
	if o.Shard.Sharded() {
		r.from, r.to = defaultShardSelection(r.stages, o.Shard)
	}
	var err error
	if o.Only != "" {
		if o.From != "" || o.To != "" {
			return &UsageError{"--only cannot be combined with --from or --to"}
		}
		if r.from, err = pos("only", o.Only); err != nil {
			return err
		}
		r.to = r.from
	}
	if o.From != "" {
		if r.from, err = pos("from", o.From); err != nil {
			return err
		}
	}
	if o.To != "" {
		if r.to, err = pos("to", o.To); err != nil {
			return err
		}
	}
	if r.from > r.to {
		return &UsageError{fmt.Sprintf("--from %s comes after --to %s", r.names[r.from], r.names[r.to])}
	}
	return checkShardSelection(r.stages[r.from:r.to+1], o.Shard)
}

// configHash hashes a stage's identity, settings (as YAML, so yaml:"-" fields such as
// output locations do not count) and the upstream hash.
//
// A stage that runs per shard also hashes the shard count N (not the index: every shard's
// part must carry the same hash), so that a run re-split in another N starts over.
func configHash(s Stage, upstream string, sh Shard) (string, error) {
	settings, err := yaml.Marshal(s.Settings())
	if err != nil {
		return "", fmt.Errorf("hash settings of %s: %w", s.Name(), err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "stage=%s\nversion=%s\nupstream=%s\n", s.Name(), s.Version(), upstream)
	if sh.Sharded() && shardingOf(s) == ShardEach {
		fmt.Fprintf(h, "shards=%d\n", sh.Count)
	}
	h.Write(settings)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Complete reports whether every stage of the chain is complete in the run directory with
// the current config, so that a resumed run would do nothing.
func (r *Runner) Complete() bool {
	for i := range r.stages {
		if _, st, _ := r.completed(i); st != stageComplete {
			return false
		}
	}
	return true
}

// stageState is what a stage's directory says about it.
type stageState int

const (
	stageAbsent    stageState = iota // no marker
	stageComplete                    // marker with the current config hash, outputs intact
	stageOtherHash                   // marker of another config
	stageBroken                      // marker unreadable, or outputs missing or changed
)

// completed reads stage i's marker in this process's directory. The marker counts only when
// it is readable, has the current config hash and every output it lists is there with its
// size and checksum; err says why it does not count (nil for stageAbsent).
func (r *Runner) completed(i int) (Marker, stageState, error) {
	s := r.stages[i]
	m, ok, err := ReadMarker(r.opt.RunDir, s.Name(), r.shardOf(s))
	switch {
	case err != nil:
		return m, stageBroken, err
	case !ok:
		return m, stageAbsent, nil
	case m.ConfigHash != r.hashes[i]:
		return m, stageOtherHash, fmt.Errorf("stage %s ran with a different config (hash %.12s, now %.12s)", s.Name(), m.ConfigHash, r.hashes[i])
	}
	if err := verifyOutputs(ShardDir(r.opt.RunDir, s.Name(), r.shardOf(s)), m); err != nil {
		return m, stageBroken, fmt.Errorf("stage %s is not complete: %w", s.Name(), err)
	}
	return m, stageComplete, nil
}

// Run runs the selected stages. The error is nil when every selected stage completed (items
// may have failed: see Summary.Failures), a *UsageError, or the halt/interrupt cause.
func (r *Runner) Run(ctx context.Context) (*Summary, error) {
	o := r.opt
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, Haltf("create run directory: %w", err)
	}
	// One process per run directory (per shard): a second one would clear and rewrite the
	// same stage directories under the first.
	lk, err := acquireLock(o.RunDir, LockName(o.Shard), currentHolder(o.Command), o.Log)
	if err != nil {
		return nil, Halt(err)
	}
	defer func() {
		if err := lk.release(); err != nil {
			o.Log.Warn("release the run directory's lock", "err", err)
		}
	}()
	r.manifest = Manifest{Command: o.Command, Started: time.Now().UTC(), Status: "running",
		Versions: o.Versions, Config: o.Config, Models: o.Models}
	for i, s := range r.stages {
		r.manifest.Stages = append(r.manifest.Stages, StageRecord{Name: s.Name(), StageVersion: s.Version(),
			ConfigHash: r.hashes[i], Status: "not_selected"})
	}
	pulled, runErr := r.pull(ctx)
	if runErr == nil {
		runErr = r.run(ctx)
	}
	return r.finish(ctx, runErr, pulled)
}

// pull copies what this process needs of a remote run directory into the working copy.
func (r *Runner) pull(ctx context.Context) (bool, error) {
	if r.opt.Remote == nil {
		return false, nil
	}
	release, err := r.opt.Remote.Claim(ctx, LockName(r.opt.Shard), currentHolder(r.opt.Command))
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("%w: %v; resume with --resume", ErrInterrupted, context.Cause(ctx))
		}
		return false, Halt(err)
	}
	r.release = release
	if err := r.opt.Remote.Pull(ctx, r.pullFilter()); err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("%w: %v; resume with --resume", ErrInterrupted, context.Cause(ctx))
		}
		return false, Haltf("pull run directory: %w", err)
	}
	return true, nil
}

// finish writes the failures table and the manifest and, for a remote run directory, pushes
// what this process made, whatever happened: an interrupted run still uploads (within a
// bound) so that a retry on another machine can resume.
func (r *Runner) finish(ctx context.Context, runErr error, pulled bool) (*Summary, error) {
	o := r.opt
	n, ferr := writeFailuresTable(o.RunDir, r.names, o.Shard, r.tableMetadata())
	if ferr != nil && runErr == nil {
		runErr = Haltf("write failures table: %w", ferr)
	}
	now := time.Now().UTC()
	r.mu.Lock()
	r.manifest.Finished = &now
	r.manifest.Failures = n
	switch {
	case errors.Is(runErr, ErrInterrupted):
		r.manifest.Status = "interrupted"
	case runErr != nil:
		r.manifest.Status = "halted"
	case n > 0:
		r.manifest.Status = "failures"
	default:
		r.manifest.Status = "ok"
	}
	if runErr != nil {
		r.manifest.Error = runErr.Error()
	}
	sum := &Summary{Stages: slices.Clone(r.manifest.Stages), Failures: n}
	r.mu.Unlock()
	if err := r.writeManifest(); err != nil && runErr == nil {
		runErr = Halt(err)
	}
	if pulled {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalPushTimeout)
		err := o.Remote.Push(pctx, "")
		cancel()
		if err != nil && runErr == nil {
			runErr = Haltf("upload run directory: %w", err)
		}
	}
	if r.release != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalPushTimeout)
		if err := r.release(rctx); err != nil {
			o.Log.Warn("release the run directory", "err", err)
		}
		cancel()
	}
	return sum, runErr
}

// finalPushTimeout bounds the upload at the end of a run, which also runs after an interrupt.
const finalPushTimeout = 2 * time.Minute

func (r *Runner) tableMetadata() arrow.Metadata {
	keys := make([]string, 0, len(r.opt.TableMetadata))
	for k := range r.opt.TableMetadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = r.opt.TableMetadata[k]
	}
	return arrow.NewMetadata(keys, vals)
}

func (r *Runner) run(ctx context.Context) error {
	if err := r.checkUpstream(); err != nil {
		return err
	}
	if err := r.writeManifest(); err != nil {
		return Halt(err)
	}
	torun, err := r.plan()
	if err != nil {
		return err
	}
	if err := r.preflight(ctx, torun); err != nil {
		return err
	}
	// Consecutive streaming stages run together as one segment.
	for len(torun) > 0 {
		seg := []int{torun[0]}
		for len(seg) < len(torun) && streams(r.stages[seg[len(seg)-1]]) && streams(r.stages[torun[len(seg)]]) &&
			torun[len(seg)] == seg[len(seg)-1]+1 {
			seg = append(seg, torun[len(seg)])
		}
		torun = torun[len(seg):]
		if err := r.runSegment(ctx, seg); err != nil {
			return err
		}
	}
	return nil
}

// checkUpstream checks that the stages before --from are complete with the current config:
// the selected stages would otherwise read stale or missing inputs.
func (r *Runner) checkUpstream() error {
	o := r.opt
	selfContained := false
	if sc, ok := r.stages[r.from].(SelfContained); ok && sc.SelfContained() {
		selfContained = true
	}
	for i := 0; i < r.from; i++ {
		s := r.stages[i]
		r.setStatus(i, "upstream", nil)
		if selfContained {
			continue
		}
		if shardingOf(s) == ShardEach && o.Shard.Sharded() && !(o.Shard.IsPart() && shardingOf(r.stages[r.from]) == ShardEach) {
			// The merge (and similarity by rows) reads every shard's outputs.
			if err := checkShardMarkers(o.RunDir, s, r.hashes[i], o.Shard.Count); err != nil {
				return Halt(err)
			}
			continue
		}
		m, err := r.upstreamMarker(i)
		if err != nil {
			return err
		}
		r.setStatus(i, "upstream", &m)
	}
	return nil
}

// upstreamMarker returns the marker of complete upstream stage i, or the halt that says why
// it does not count.
func (r *Runner) upstreamMarker(i int) (Marker, error) {
	s, o := r.stages[i], r.opt
	m, st, err := r.completed(i)
	switch {
	case st == stageComplete:
		return m, nil
	case st == stageAbsent && o.Shard.Sharded() && shardingOf(s) == ShardNone:
		return m, Haltf("stage %s has not completed in %s: a sharded run runs it once, before the shards (--only %s)", s.Name(), o.RunDir, s.Name())
	case st == stageAbsent:
		return m, Haltf("stage %s has not completed in %s: run it first (for example --from %s)", s.Name(), o.RunDir, s.Name())
	}
	return m, Haltf("%w: re-run from it (--from %s)", err, s.Name())
}

// plan decides which selected stages run. A resumed run skips a complete stage with the
// current config; a stage after one that runs always runs too: its inputs are being rewritten.
func (r *Runner) plan() ([]int, error) {
	o := r.opt
	var torun []int
	upstreamRan := false
	for i := r.from; i <= r.to; i++ {
		if o.Resume && !upstreamRan {
			s := r.stages[i]
			m, st, err := r.completed(i)
			if st == stageComplete && !(o.RetryFailed && m.Counts["failed"] > 0) {
				r.setStatus(i, "skipped", &m)
				o.Log.Info("stage already complete", "stage", s.Name())
				continue
			}
			if st == stageBroken {
				// Not a halt: running the stage again is what repairs it.
				o.Log.Warn("stage marker does not hold: running the stage again", "stage", s.Name(), "reason", err)
				if derr := dropChanged(ShardDir(o.RunDir, s.Name(), r.shardOf(s)), m); derr != nil {
					return nil, Haltf("remove the damaged outputs of stage %s: %w", s.Name(), derr)
				}
			}
		}
		upstreamRan = true
		r.setStatus(i, "pending", nil)
		torun = append(torun, i)
	}
	// A complete stage whose output stays on the machine runs again before the first stage
	// that runs, when that stage reads it: its marker may come from another machine.
	for len(torun) > 0 && torun[0] > r.from && machineLocal(r.stages[torun[0]-1]) {
		i := torun[0] - 1
		o.Log.Info("stage runs again: its output stays on the machine that ran it, and the next stage needs it",
			"stage", r.names[i], "next", r.names[torun[0]])
		r.setStatus(i, "pending", nil)
		torun = append([]int{i}, torun...)
	}
	return torun, nil
}

func machineLocal(s Stage) bool {
	m, ok := s.(MachineLocal)
	return ok && m.MachineLocal()
}

// preflight lets every stage that will run check what would halt it, before any runs.
func (r *Runner) preflight(ctx context.Context, torun []int) error {
	for _, i := range torun {
		p, ok := r.stages[i].(Preflighter)
		if !ok {
			continue
		}
		if err := p.Preflight(ctx); err != nil {
			r.setStatus(i, "failed", nil)
			if IsHalt(err) {
				return fmt.Errorf("stage %s (checked before the run): %w", r.names[i], err)
			}
			return Haltf("stage %s (checked before the run): %w", r.names[i], err)
		}
	}
	return nil
}

func streams(s Stage) bool {
	st, ok := s.(Streamer)
	return ok && st.Streams()
}

// processItems lists the run's items once and keeps this process's shard of them.
func (r *Runner) processItems(ctx context.Context) ([]Item, error) {
	r.itemsOnce.Do(func() {
		if r.opt.Items == nil {
			r.itemsErr = errors.New("no item source for the streaming stages")
			return
		}
		all, err := r.opt.Items(ctx)
		if err != nil {
			r.itemsErr = fmt.Errorf("list the run's items: %w", err)
			return
		}
		r.items = ShardOf(all, func(it Item) string { return it.ID }, r.opt.Shard)
	})
	return r.items, r.itemsErr
}

// runSegment runs stages concurrently, each feeding the next.
func (r *Runner) runSegment(parent context.Context, idx []int) error {
	var items []Item
	if streams(r.stages[idx[0]]) {
		var err error
		if items, err = r.processItems(parent); err != nil {
			return Halt(err)
		}
	}
	g, gctx := errgroup.WithContext(parent)
	// Cancel before closing a failed stage's output, so the stage downstream, seeing its input
	// end, also sees the cancellation and does not mark itself complete.
	ctx, cancel := context.WithCancelCause(gctx)
	defer cancel(nil)
	var in <-chan Item
	for k, i := range idx {
		var out chan Item
		if k < len(idx)-1 {
			out = make(chan Item, r.opt.StreamBuffer)
		}
		stageIn := in
		g.Go(func() error {
			err := r.runStage(ctx, i, items, stageIn, out)
			if err != nil {
				cancel(err)
			}
			if out != nil {
				close(out)
			}
			return err
		})
		in = out
	}
	err := g.Wait()
	if err != nil && parent.Err() != nil {
		return fmt.Errorf("%w: %v; resume with --resume", ErrInterrupted, context.Cause(parent))
	}
	return err
}

// runStage runs stage i in its directory and commits it: the failures table, the marker last
// (and, for a remote run directory, the stage's files then its marker object).
func (r *Runner) runStage(ctx context.Context, i int, items []Item, in <-chan Item, out chan Item) error {
	s, o := r.stages[i], r.opt
	dir := ShardDir(o.RunDir, s.Name(), r.shardOf(s))
	keep, err := r.prepareDir(ctx, i, dir)
	if err != nil {
		return r.failed(i, nil, nil, err)
	}
	started := time.Now().UTC()
	sc, err := NewContext(ContextConfig{Stage: s.Name(), RunDir: o.RunDir, Dir: dir, Shard: o.Shard, Resume: keep,
		ConfigHash: r.hashes[i], Workers: o.Workers, Log: o.Log.With("stage", s.Name()), Progress: o.Progress,
		Items: items, In: in, Out: out})
	if err != nil {
		return r.failed(i, &started, nil, Halt(err))
	}
	r.setRecord(i, func(rec *StageRecord) { rec.Status = "running"; rec.Started = &started })
	if err := r.writeManifest(); err != nil {
		sc.Close()
		return r.failed(i, &started, nil, Halt(err))
	}
	o.Log.Info("stage started", "stage", s.Name(), "resume", keep, "shard", o.Shard.String())

	runErr := s.Run(ctx, sc)
	// A stage that returns after cancellation did not finish, whatever it returned: it may
	// have seen its input end early because the stage upstream stopped.
	cancelled := ctx.Err() != nil
	if runErr == nil && cancelled {
		runErr = context.Cause(ctx)
	}
	if in != nil && runErr == nil {
		// Drain so the upstream stage is never blocked by a consumer that stopped early.
		for range in {
		}
	}
	if cerr := sc.Close(); cerr != nil && runErr == nil {
		runErr = Halt(cerr)
	}
	if sc.bar != nil {
		sc.bar.Finish(runErr == nil)
	}
	counts := sc.Counts()
	switch {
	case runErr != nil && cancelled:
		r.record(i, "interrupted", &started, counts, nil)
		o.Log.Warn("stage stopped", "stage", s.Name(), "cause", context.Cause(ctx))
		return runErr
	case runErr != nil:
		return r.failed(i, &started, counts, runErr)
	}
	if err := r.commit(ctx, i, dir, started, counts); err != nil {
		return r.failed(i, &started, counts, err)
	}
	return nil
}

// prepareDir makes the stage directory ready: kept for a resumed attempt with the same
// config, cleared otherwise; the old marker removed (here and in the remote); the attempt
// recorded in _STARTED.json. It reports whether the earlier attempt's items are kept.
func (r *Runner) prepareDir(ctx context.Context, i int, dir string) (bool, error) {
	keep := false
	if r.opt.Resume {
		if st, ok := readStarted(dir); ok && st == r.hashes[i] {
			keep = true
		}
	}
	if !keep {
		if err := clearStageDir(dir); err != nil {
			return false, Haltf("clear stage directory %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, Haltf("create stage directory: %w", err)
	}
	// The marker of an earlier attempt no longer holds once the stage runs again.
	if err := os.Remove(filepath.Join(dir, MarkerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, Haltf("remove the old marker of stage %s: %w", r.names[i], err)
	}
	if r.opt.Remote != nil {
		if err := r.opt.Remote.Invalidate(ctx, r.relMarker(dir)); err != nil {
			return false, Haltf("remove the old marker object of stage %s: %w", r.names[i], err)
		}
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, startedFile), []byte(r.hashes[i]+"\n")); err != nil {
		return false, Haltf("record the start of stage %s: %w", r.names[i], err)
	}
	return keep, nil
}

// commit writes what a completed stage leaves: the failures table, then the marker, then (for
// a remote run directory) the stage's files and the marker object last.
func (r *Runner) commit(ctx context.Context, i int, dir string, started time.Time, counts map[string]int64) error {
	s, o := r.stages[i], r.opt
	finished := time.Now().UTC()
	m := Marker{Stage: s.Name(), StageVersion: s.Version(), ConfigHash: r.hashes[i], PipelineVersion: o.PipelineVersion,
		Counts: counts, Started: started, Finished: finished, DurationS: finished.Sub(started).Seconds()}
	if sh := r.shardOf(s); sh.IsPart() {
		m.Shard = sh.String()
	}
	outs, err := listOutputs(dir)
	if err != nil {
		return Halt(err)
	}
	m.Outputs = outs
	if _, err := writeFailuresTable(o.RunDir, r.names, o.Shard, r.tableMetadata()); err != nil {
		return Haltf("write failures table: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Haltf("encode the marker of stage %s: %w", s.Name(), err)
	}
	// The outputs' directory entries reach the disk before the marker, and the marker's own
	// entry after it: a marker that survives a power cut vouches for outputs that did.
	if err := atomicfile.SyncTree(dir); err != nil {
		return Haltf("stage %s: %w", s.Name(), err)
	}
	marker := filepath.Join(dir, MarkerFile)
	if err := atomicfile.WriteBytes(marker, append(b, '\n')); err != nil {
		return Haltf("write the marker of stage %s: %w", s.Name(), err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return Haltf("stage %s: %w", s.Name(), err)
	}
	if o.Remote != nil {
		// Every file first, the marker object last: until it exists the stage is not done
		// for any reader of the bucket.
		if err := o.Remote.Push(ctx, r.relMarker(dir)); err != nil {
			// Nor here: a resumed run must redo the upload, not skip the stage.
			if rerr := os.Remove(marker); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return Haltf("upload stage %s: %w (and remove its local marker: %v)", s.Name(), err, rerr)
			}
			return Haltf("upload stage %s: %w", s.Name(), err)
		}
	}
	r.record(i, "done", &started, counts, nil)
	o.Log.Info("stage done", "stage", s.Name(), "seconds", fmt.Sprintf("%.1f", m.DurationS), "counts", counts)
	if err := r.writeManifest(); err != nil {
		return Halt(err)
	}
	return nil
}

// failed records that stage i stopped with err (a halt) and returns err naming the stage.
func (r *Runner) failed(i int, started *time.Time, counts map[string]int64, err error) error {
	if !IsHalt(err) {
		err = &HaltError{Err: err}
	}
	r.record(i, "failed", started, counts, err)
	return fmt.Errorf("stage %s: %w", r.names[i], err)
}

// record sets stage i's manifest entry at its end.
func (r *Runner) record(i int, status string, started *time.Time, counts map[string]int64, err error) {
	finished := time.Now().UTC()
	r.setRecord(i, func(rec *StageRecord) {
		rec.Status, rec.Finished, rec.Counts = status, &finished, counts
		if started != nil {
			rec.Started, rec.DurationS = started, finished.Sub(*started).Seconds()
		}
		if err != nil {
			rec.Error = err.Error()
		}
	})
}

func readStarted(dir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, startedFile))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func (r *Runner) setStatus(i int, status string, m *Marker) {
	r.setRecord(i, func(rec *StageRecord) {
		rec.Status = status
		if m != nil {
			st, fin := m.Started, m.Finished
			rec.Started, rec.Finished, rec.DurationS, rec.Counts = &st, &fin, m.DurationS, m.Counts
		}
	})
}

func (r *Runner) setRecord(i int, f func(*StageRecord)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.manifest.Stages[i])
}

func (r *Runner) writeManifest() error {
	r.mu.Lock()
	b, err := json.MarshalIndent(r.manifest, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(r.opt.RunDir, ManifestName(r.opt.Shard)), append(b, '\n')); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// shardOf is the shard whose directory a stage uses in this process: the process's shard
// for a stage that runs per shard there, none for the others (a plan step, the merge).
func (r *Runner) shardOf(s Stage) Shard {
	if r.opt.Shard.IsPart() && shardingOf(s) != ShardNone {
		return r.opt.Shard
	}
	return Shard{}
}

// defaultShardSelection: a shard process runs the per-shard stages; the merge runs what comes
// after them. The plan step is --only of the stage(s) before them.
func defaultShardSelection(stages []Stage, sh Shard) (from, to int) {
	first, last := -1, -1
	for i, s := range stages {
		if shardingOf(s) == ShardEach {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, len(stages) - 1
	}
	if sh.IsPart() {
		return first, last
	}
	if last == len(stages)-1 {
		return 0, len(stages) - 1 // nothing after them: NewRunner reports the selection
	}
	return last + 1, len(stages) - 1
}

// checkShardSelection refuses stages that cannot run in this process of a sharded run.
func checkShardSelection(sel []Stage, sh Shard) error {
	if !sh.Sharded() {
		return nil
	}
	for _, s := range sel {
		switch sd := shardingOf(s); {
		case sh.IsPart() && sd == ShardNone:
			return &UsageError{fmt.Sprintf("stage %s runs once per run, not per shard: run it without --shard (before the shards, or in the merge after them)", s.Name())}
		case !sh.IsPart() && sd == ShardEach:
			return &UsageError{fmt.Sprintf("stage %s runs per shard in a run of %d shards: pass --shard i/%d (or run the steps before or after the shards)", s.Name(), sh.Count, sh.Count)}
		}
	}
	return nil
}
