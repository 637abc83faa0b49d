// Package pipeline is the engine every stage plugs into: stage selection and resume, completion
// markers, per-item failures as data, streaming hand-off between stages, progress and the run
// manifest.
package pipeline

import (
	"context"
	"log/slog"
)

// Stage names in pipeline order. The order is the data flow of design §2.
const (
	StageCohort     = "cohort"
	StageFetch      = "fetch"
	StagePreprocess = "preprocess"
	StageEmbed      = "embed"
	StageSimilarity = "similarity"
	StageReport     = "report"
)

// StageOrder lists every stage in run order.
func StageOrder() []string {
	return []string{StageCohort, StageFetch, StagePreprocess, StageEmbed, StageSimilarity, StageReport}
}

// Stage is one step of the pipeline as the runner sees it.
type Stage interface {
	// Name is one of the Stage* constants.
	Name() string
	// Version changes whenever the stage's output for the same input and config changes;
	// it is part of the config hash, so bumping it re-runs the stage on resume.
	Version() string
	// Settings returns the settings that decide the stage's output. They are hashed (as JSON)
	// with the version and the upstream stage's hash; a change re-runs this stage and every
	// stage after it.
	Settings() any
	// Run does the stage's work. It returns nil when every item was attempted (failed items
	// are reported through Context.Fail and do not make Run fail), a *HaltError or any other
	// error to stop the whole run, or ctx.Err() when cancelled.
	Run(ctx context.Context, sc *Context) error
}

// Item is one unit of work that streams between fetch, preprocess and embed: a lesion.
type Item struct {
	// ID is the lesion_id.
	ID string
	// Payload is an optional in-memory hand-off to the next stage (for example the
	// preprocessed tensors). It is nil when the item comes from disk on resume, and the
	// receiving stage must then load or recompute what it needs.
	Payload any
}

// Context is what a running stage gets from the engine.
type Context struct {
	// RunDir is the run's root directory; Dir is this stage's own output directory
	// (RunDir/<stage name>), created before Run is called.
	RunDir string
	Dir    string
	// Shard is the process's part of a sharded run; the zero value when the run is not
	// sharded. A ShardEach stage does only the lesions sc.Shard.Owns, and its Dir is then
	// RunDir/<stage>/shard-i-of-N; see ShardDir for an upstream stage's directory.
	Shard Shard
	// Resume is true when completed items of an earlier attempt of this stage, with the
	// same config hash, should be kept and skipped.
	Resume bool
	// ConfigHash is this stage's effective config hash (hex); put it in every table's metadata.
	ConfigHash string
	// Workers is the default worker count (from --workers or the config).
	Workers int
	Log     *slog.Logger

	// In delivers the items that the upstream stage has finished, when the upstream stage
	// runs in the same streaming segment; nil otherwise, and then the stage enumerates its
	// items itself (usually from cohort/lesions.arrow). Use Items to handle both.
	In <-chan Item
	// Out, when not nil, takes each item this stage has finished, for the downstream
	// stage in the same segment. Use Emit, which respects cancellation.
	Out chan<- Item

	failures  *failureLog
	counts    *counters
	progress  *Progress
	stageName string
	bar       *Bar
}

// Items returns In when the upstream stage streams into this one, or else a channel that
// yields all (closed after the last). Stop reading only when ctx is cancelled.
func (c *Context) Items(ctx context.Context, all []Item) <-chan Item {
	if c.In != nil {
		return c.In
	}
	ch := make(chan Item)
	go func() {
		defer close(ch)
		for _, it := range all {
			select {
			case ch <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// Emit hands a finished item to the downstream stage, if there is one in this segment.
func (c *Context) Emit(ctx context.Context, it Item) error {
	if c.Out == nil {
		return nil
	}
	select {
	case c.Out <- it:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Fail records a per-item failure in failures.arrow; the run goes on. It is safe for
// concurrent use. err should be an *ItemError (see Itemf); any other error is recorded
// with class "error".
func (c *Context) Fail(item string, err error) {
	c.failures.add(c.stageName, item, err)
	c.counts.add("failed", 1)
	c.Log.Warn("item failed", "stage", c.stageName, "item", item, "err", err)
}

// Count adds n to a named counter that ends up in the stage's _SUCCESS.json and the
// manifest (for example "lesions", "bytes", "skipped").
func (c *Context) Count(name string, n int64) { c.counts.add(name, n) }

// Progress returns the stage's progress bar, set to total items (0 if unknown yet).
// Call SetTotal when the total becomes known; call Add as items finish.
func (c *Context) Progress(total int64) *Bar {
	if c.bar == nil {
		c.bar = c.progress.Bar(c.stageName, total)
	} else if total > 0 {
		c.bar.SetTotal(total)
	}
	return c.bar
}
