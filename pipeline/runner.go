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

	"connectome/arrowio"
	"connectome/atomicfile"

	"github.com/goccy/go-yaml"
	"golang.org/x/sync/errgroup"
)

// File names the engine owns inside a stage directory.
const (
	MarkerFile  = "_SUCCESS.json"
	startedFile = "_STARTED.json"
)

// Streamer is implemented by stages that hand items to the next stage while they run
// (fetch, preprocess, embed). Consecutive streaming stages that both run are connected by a
// bounded channel and run concurrently.
type Streamer interface{ Streams() bool }

// SelfContained is implemented by a stage that can run without its upstream stages' outputs
// when it says so (similarity fed with --embeddings files).
type SelfContained interface{ SelfContained() bool }

// Preflighter is implemented by a stage that can find a problem that would halt it (no CUDA
// provider, a missing model file) before any stage runs, so that a run does not query, download
// and crop for hours only to stop at that stage.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// UsageError is a command-line mistake (exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ErrInterrupted is returned (wrapped) when the run was stopped by a signal or cancellation.
var ErrInterrupted = errors.New("interrupted")

// Options configure a run.
type Options struct {
	RunDir         string
	From, To, Only string
	Resume         bool
	// RetryFailed makes a resumed run re-run complete stages that recorded item failures,
	// retrying just the failed items (completed items are kept).
	RetryFailed     bool
	Workers         int
	Log             *slog.Logger
	Progress        *Progress
	PipelineVersion string
	IDCVersion      string
	// StreamBuffer is the capacity of the channel between two streaming stages.
	StreamBuffer int
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

// Marker is a stage's completion marker, written last.
type Marker struct {
	Stage           string           `json:"stage"`
	StageVersion    string           `json:"stage_version"`
	ConfigHash      string           `json:"config_hash"`
	PipelineVersion string           `json:"pipeline_version"`
	Counts          map[string]int64 `json:"counts"`
	Started         time.Time        `json:"started"`
	Finished        time.Time        `json:"finished"`
	DurationS       float64          `json:"duration_s"`
	// Shard is "i/N" for a shard's marker, empty otherwise.
	Shard string `json:"shard,omitempty"`
}

// ReadMarker reads RunDir/<stage>/_SUCCESS.json; ok is false when it does not exist.
func ReadMarker(runDir, stage string) (m Marker, ok bool, err error) {
	return readMarkerDir(filepath.Join(runDir, stage), stage)
}

func readMarkerDir(dir, stage string) (m Marker, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("read marker of %s: %w", stage, err)
	}
	return m, true, nil
}

// StageRecord is a stage's entry in the manifest.
type StageRecord struct {
	Name         string           `json:"name"`
	StageVersion string           `json:"stage_version"`
	ConfigHash   string           `json:"config_hash"`
	Status       string           `json:"status"` // done, skipped (complete earlier), upstream, not_selected, failed, interrupted, pending
	Started      *time.Time       `json:"started,omitempty"`
	Finished     *time.Time       `json:"finished,omitempty"`
	DurationS    float64          `json:"duration_s,omitempty"`
	Counts       map[string]int64 `json:"counts,omitempty"`
	Error        string           `json:"error,omitempty"`
}

// Manifest is RunDir/manifest.json.
type Manifest struct {
	Command  []string          `json:"command"`
	Started  time.Time         `json:"started"`
	Finished *time.Time        `json:"finished,omitempty"`
	Status   string            `json:"status"` // running, ok, failures, halted, interrupted
	Error    string            `json:"error,omitempty"`
	Versions map[string]string `json:"versions"`
	Config   any               `json:"config"`
	Models   any               `json:"models,omitempty"`
	Stages   []StageRecord     `json:"stages"`
	Failures int               `json:"failures"`
}

// Summary is what a run did.
type Summary struct {
	Stages   []StageRecord
	Failures int // rows in failures.arrow
}

// Runner runs a chain of stages over one run directory.
type Runner struct {
	stages []Stage
	hashes []string
	opt    Options
	from   int
	to     int

	mu       sync.Mutex
	manifest Manifest
}

// NewRunner checks the stage chain and the selection flags.
func NewRunner(stages []Stage, opt Options) (*Runner, error) {
	if len(stages) == 0 {
		return nil, errors.New("no stages")
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Progress == nil {
		opt.Progress = NewProgress(nil, false, opt.Log, 0)
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
	names := make([]string, len(stages))
	for i, s := range stages {
		names[i] = s.Name()
		if i > 0 && stageIndex(s.Name()) <= stageIndex(stages[i-1].Name()) {
			return nil, fmt.Errorf("stage %s listed after %s: stages must follow %v", s.Name(), stages[i-1].Name(), StageOrder())
		}
	}
	pos := func(flag, name string) (int, error) {
		i := slices.Index(names, name)
		if i < 0 {
			return 0, &UsageError{fmt.Sprintf("--%s %q: unknown stage (stages: %s)", flag, name, strings.Join(names, ", "))}
		}
		return i, nil
	}
	r.from, r.to = 0, len(stages)-1
	if opt.Shard.Sharded() {
		r.from, r.to = defaultShardSelection(stages, opt.Shard)
	}
	var err error
	if opt.Only != "" {
		if opt.From != "" || opt.To != "" {
			return nil, &UsageError{"--only cannot be combined with --from or --to"}
		}
		if r.from, err = pos("only", opt.Only); err != nil {
			return nil, err
		}
		r.to = r.from
	}
	if opt.From != "" {
		if r.from, err = pos("from", opt.From); err != nil {
			return nil, err
		}
	}
	if opt.To != "" {
		if r.to, err = pos("to", opt.To); err != nil {
			return nil, err
		}
	}
	if r.from > r.to {
		return nil, &UsageError{fmt.Sprintf("--from %s comes after --to %s", names[r.from], names[r.to])}
	}
	if err := checkShardSelection(stages[r.from:r.to+1], opt.Shard); err != nil {
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

// ConfigHashes returns each stage's effective config hash, in stage order.
func (r *Runner) ConfigHashes() []string { return slices.Clone(r.hashes) }

// Run runs the selected stages. The error is nil when every selected stage completed (items
// may have failed: see Summary.Failures), a *UsageError, or the halt/interrupt cause.
func (r *Runner) Run(ctx context.Context) (*Summary, error) {
	o := r.opt
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, Haltf("create run directory: %w", err)
	}
	r.manifest = Manifest{Command: o.Command, Started: time.Now().UTC(), Status: "running",
		Versions: o.Versions, Config: o.Config, Models: o.Models}
	for i, s := range r.stages {
		r.manifest.Stages = append(r.manifest.Stages, StageRecord{Name: s.Name(), StageVersion: s.Version(),
			ConfigHash: r.hashes[i], Status: "not_selected"})
	}

	var runErr error
	pulled := false
	if o.Remote != nil {
		if err := o.Remote.Pull(ctx, r.pullFilter()); err == nil {
			pulled = true
		} else {
			runErr = Haltf("pull run directory: %w", err)
			if ctx.Err() != nil {
				runErr = fmt.Errorf("%w: %v; resume with --resume", ErrInterrupted, context.Cause(ctx))
			}
		}
	}
	if runErr == nil {
		runErr = r.run(ctx)
	}

	n, ferr := writeFailuresTable(o.RunDir, o.Shard, arrowio.Metadata(o.PipelineVersion, o.IDCVersion, "", nil))
	if ferr != nil && runErr == nil {
		runErr = Haltf("write failures.arrow: %w", ferr)
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
		runErr = Haltf("write manifest: %w", err)
	}
	if pulled {
		// The manifest, the failures table and whatever an interrupted stage finished (with no
		// marker: not done, but a resumed stage keeps its items). An interrupted run still
		// pushes, within a bound, so a retry on another machine can resume.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalPushTimeout)
		err := o.Remote.Push(pctx, "")
		cancel()
		if err != nil && runErr == nil {
			runErr = Haltf("upload run directory: %w", err)
		}
	}
	return sum, runErr
}

// finalPushTimeout bounds the upload at the end of a run, which also runs after an interrupt.
const finalPushTimeout = 2 * time.Minute

func (r *Runner) run(ctx context.Context) error {
	o := r.opt
	selfContained := false
	if sc, ok := r.stages[r.from].(SelfContained); ok && sc.SelfContained() {
		selfContained = true
	}
	// Stages before --from must be complete with the current config, or the selected
	// stages would read stale or missing inputs.
	for i := 0; i < r.from; i++ {
		s := r.stages[i]
		r.setStatus(i, "upstream", nil)
		if selfContained {
			continue
		}
		if shardingOf(s) == ShardEach && o.Shard.Sharded() && !(o.Shard.IsPart() && shardingOf(r.stages[r.from]) == ShardEach) {
			// The merge (and similarity by rows) reads every shard's outputs.
			if err := checkShardMarkers(o.RunDir, s.Name(), r.hashes[i], o.Shard.Count); err != nil {
				return Haltf("%w", err)
			}
			continue
		}
		m, ok, err := ReadShardMarker(o.RunDir, s.Name(), r.shardOf(s))
		if err != nil {
			return Haltf("%w", err)
		}
		if !ok {
			if o.Shard.Sharded() && shardingOf(s) == ShardNone && s.Name() == StageCohort {
				return Haltf("stage cohort has not completed in %s: a sharded run plans its cohort once, before the shards: connectome run --only cohort", o.RunDir)
			}
			return Haltf("stage %s has not completed in %s: run it first (for example --from %s)", s.Name(), o.RunDir, s.Name())
		}
		if m.ConfigHash != r.hashes[i] {
			return Haltf("stage %s ran with a different config (hash %.12s, now %.12s): re-run from it (--from %s)", s.Name(), m.ConfigHash, r.hashes[i], s.Name())
		}
		r.setStatus(i, "upstream", &m)
	}
	if err := r.writeManifest(); err != nil {
		return Haltf("write manifest: %w", err)
	}

	// Decide which selected stages run. A stage after one that runs always runs too: its
	// inputs are being rewritten.
	var torun []int
	upstreamRan := false
	for i := r.from; i <= r.to; i++ {
		if o.Resume && !upstreamRan {
			m, ok, err := ReadShardMarker(o.RunDir, r.stages[i].Name(), r.shardOf(r.stages[i]))
			if err != nil {
				return Haltf("%w", err)
			}
			if ok && m.ConfigHash == r.hashes[i] && !(o.RetryFailed && m.Counts["failed"] > 0) {
				r.setStatus(i, "skipped", &m)
				o.Log.Info("stage already complete", "stage", r.stages[i].Name())
				continue
			}
		}
		upstreamRan = true
		r.setStatus(i, "pending", nil)
		torun = append(torun, i)
	}

	for _, i := range torun {
		if p, ok := r.stages[i].(Preflighter); ok {
			if err := p.Preflight(ctx); err != nil {
				r.setStatus(i, "failed", nil)
				if IsHalt(err) {
					return fmt.Errorf("stage %s (checked before the run): %w", r.stages[i].Name(), err)
				}
				return Haltf("stage %s (checked before the run): %w", r.stages[i].Name(), err)
			}
		}
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

func streams(s Stage) bool {
	st, ok := s.(Streamer)
	return ok && st.Streams()
}

// runSegment runs stages concurrently, each feeding the next.
func (r *Runner) runSegment(parent context.Context, idx []int) error {
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
			err := r.runStage(ctx, parent, i, stageIn, out)
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

func (r *Runner) runStage(ctx, parent context.Context, i int, in <-chan Item, out chan Item) (err error) {
	s := r.stages[i]
	o := r.opt
	sh := r.shardOf(s)
	dir := ShardDir(o.RunDir, s.Name(), sh)
	keep := false
	if o.Resume {
		if st, ok := readStarted(dir); ok && st == r.hashes[i] {
			keep = true
		}
	}
	if !keep {
		if err := clearStageDir(dir); err != nil {
			return Haltf("clear %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Haltf("create %s: %w", dir, err)
	}
	// The marker of an earlier attempt no longer holds once the stage runs again.
	if err := os.Remove(filepath.Join(dir, MarkerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Haltf("remove old marker: %w", err)
	}
	if o.Remote != nil {
		if err := o.Remote.Invalidate(ctx, r.relMarker(dir)); err != nil {
			return Haltf("remove old marker object: %w", err)
		}
	}
	started := time.Now().UTC()
	if err := atomicfile.WriteBytes(filepath.Join(dir, startedFile), []byte(r.hashes[i]+"\n")); err != nil {
		return Haltf("%w", err)
	}
	fl, err := openFailureLog(dir)
	if err != nil {
		return Haltf("%w", err)
	}
	counts := newCounters()
	sc := &Context{RunDir: o.RunDir, Dir: dir, Shard: o.Shard, Resume: keep, ConfigHash: r.hashes[i], Workers: o.Workers,
		Log: o.Log.With("stage", s.Name()), In: in, Out: out,
		failures: fl, counts: counts, progress: o.Progress, stageName: s.Name()}
	r.setRecord(i, func(rec *StageRecord) { rec.Status = "running"; rec.Started = &started })
	r.writeManifest()
	if o.Shard.Sharded() {
		o.Log.Info("stage started", "stage", s.Name(), "resume", keep, "shard", o.Shard.String())
	} else {
		o.Log.Info("stage started", "stage", s.Name(), "resume", keep)
	}

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
	if cerr := fl.close(); cerr != nil && runErr == nil {
		runErr = Haltf("%w", cerr)
	}
	if sc.bar != nil {
		sc.bar.finish(runErr == nil)
	}
	finished := time.Now().UTC()
	snap := counts.snapshot()
	rec := func(status string, e error) {
		r.setRecord(i, func(rec *StageRecord) {
			rec.Status, rec.Finished, rec.Counts = status, &finished, snap
			rec.DurationS = finished.Sub(started).Seconds()
			if e != nil {
				rec.Error = e.Error()
			}
		})
	}
	if runErr != nil {
		if cancelled {
			rec("interrupted", nil)
			o.Log.Warn("stage stopped", "stage", s.Name(), "cause", context.Cause(ctx))
			return runErr
		}
		if !IsHalt(runErr) {
			runErr = &HaltError{Err: runErr}
		}
		rec("failed", runErr)
		return fmt.Errorf("stage %s: %w", s.Name(), runErr)
	}
	m := Marker{Stage: s.Name(), StageVersion: s.Version(), ConfigHash: r.hashes[i], PipelineVersion: o.PipelineVersion,
		Counts: snap, Started: started, Finished: finished, DurationS: finished.Sub(started).Seconds()}
	if sh.IsPart() {
		m.Shard = sh.String()
	}
	if _, err := writeFailuresTable(o.RunDir, o.Shard, arrowio.Metadata(o.PipelineVersion, o.IDCVersion, "", nil)); err != nil {
		return Haltf("write failures.arrow: %w", err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := atomicfile.WriteBytes(filepath.Join(dir, MarkerFile), append(b, '\n')); err != nil {
		return Haltf("%w", err)
	}
	if o.Remote != nil {
		// Every file first, the marker object last: until it exists the stage is not done
		// for any reader of the bucket.
		if err := o.Remote.Push(ctx, r.relMarker(dir)); err != nil {
			// Nor here: a resumed run must redo the upload, not skip the stage.
			os.Remove(filepath.Join(dir, MarkerFile))
			err = Haltf("upload stage %s: %w", s.Name(), err)
			rec("failed", err)
			return fmt.Errorf("stage %s: %w", s.Name(), err)
		}
	}
	rec("done", nil)
	o.Log.Info("stage done", "stage", s.Name(), "seconds", fmt.Sprintf("%.1f", m.DurationS), "counts", snap)
	return r.writeManifest()
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
	return atomicfile.WriteBytes(filepath.Join(r.opt.RunDir, ManifestName(r.opt.Shard)), append(b, '\n'))
}

// ExitCode maps a run's outcome to the exit status of design §5: 0 all items done, 3 finished
// with per-item failures, 1 halted or interrupted, 2 usage error.
func ExitCode(sum *Summary, err error) int {
	var ue *UsageError
	switch {
	case errors.As(err, &ue):
		return 2
	case err != nil:
		return 1
	case sum != nil && sum.Failures > 0:
		return 3
	}
	return 0
}

// shardOf is the shard whose directory a stage uses in this process: the process's shard
// for a stage that runs per shard there, none for the others (cohort, report, the merge).
func (r *Runner) shardOf(s Stage) Shard {
	if r.opt.Shard.IsPart() && shardingOf(s) != ShardNone {
		return r.opt.Shard
	}
	return Shard{}
}

// ManifestName is the manifest's file name at the run root: manifest.json, or
// manifest-shard-i-of-N.json for a shard process, so that shards running at once never
// overwrite each other's record.
func ManifestName(s Shard) string {
	if s.IsPart() {
		return "manifest-" + s.Name() + ".json"
	}
	return "manifest.json"
}

// FailuresName is the failures table's file name at the run root: failures.arrow (every
// stage and shard), or failures-shard-i-of-N.arrow (that shard's own failures).
func FailuresName(s Shard) string {
	if s.IsPart() {
		return "failures-" + s.Name() + ".arrow"
	}
	return "failures.arrow"
}

// defaultShardSelection: a shard process runs the per-shard stages (fetch → embed); the
// merge runs what comes after them (similarity, report). The plan step is --only cohort.
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
			return &UsageError{fmt.Sprintf("stage %s runs once per run, not per shard: run it without --shard (the plan step is --only cohort; the merge is --from similarity)", s.Name())}
		case !sh.IsPart() && sd == ShardEach:
			return &UsageError{fmt.Sprintf("stage %s runs per shard in a run of %d shards: pass --shard i/%d (or run the plan step, --only cohort, or the merge, --from similarity)", s.Name(), sh.Count, sh.Count)}
		}
	}
	return nil
}
