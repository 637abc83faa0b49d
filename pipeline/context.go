package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"golang.org/x/sync/errgroup"
)

// Context is what a running stage gets from the engine.
type Context struct {
	// RunDir is the run's root directory; Dir is this stage's own directory for this process
	// (see ShardDir), created before Run is called. A stage writes only under Dir.
	RunDir string
	Dir    string
	// Shard is the process's part of a sharded run; the zero value when the run is not sharded.
	Shard Shard
	// Resume is true when completed items of an earlier attempt of this stage, with the same
	// config hash, should be kept and skipped.
	Resume bool
	// ConfigHash is this stage's effective config hash (hex); put it in every table's metadata.
	ConfigHash string
	// Workers is the default worker count (from --workers or the config).
	Workers int
	Log     *slog.Logger
	// Mem allocates the stage's Arrow memory (tests pass a checked allocator).
	Mem memory.Allocator

	stage    string
	items    []Item
	in       <-chan Item
	out      chan<- Item
	failures *failureLog
	counts   *counters
	progress Progress
	bar      Bar
}

// ContextConfig is what a stage's Context is made of. The runner makes one for every stage it
// runs; a test can make its own to run a stage without a runner.
type ContextConfig struct {
	Stage      string
	RunDir     string
	Dir        string // default RunDir/Stage
	Shard      Shard
	Resume     bool
	ConfigHash string
	Workers    int
	Log        *slog.Logger     // default: discard
	Mem        memory.Allocator // default: memory.DefaultAllocator
	Progress   Progress         // default: none shown
	// Items are the process's items, for a streaming stage; In, when not nil, delivers those
	// that the upstream stage finished, and Out takes those this stage finishes.
	Items []Item
	In    <-chan Item
	Out   chan<- Item
}

// NewContext creates the stage directory and opens the stage's failure journal, truncating
// the one of an earlier attempt (a stage that runs again retries its failed items). Close it.
func NewContext(cfg ContextConfig) (*Context, error) {
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(cfg.RunDir, cfg.Stage)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mem == nil {
		cfg.Mem = memory.DefaultAllocator
	}
	if cfg.Progress == nil {
		cfg.Progress = quietProgress{}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create stage directory %s: %w", cfg.Dir, err)
	}
	fl, err := openFailureLog(cfg.Dir)
	if err != nil {
		return nil, err
	}
	return &Context{RunDir: cfg.RunDir, Dir: cfg.Dir, Shard: cfg.Shard, Resume: cfg.Resume,
		ConfigHash: cfg.ConfigHash, Workers: max(cfg.Workers, 1), Log: cfg.Log, Mem: cfg.Mem,
		stage: cfg.Stage, items: cfg.Items, in: cfg.In, out: cfg.Out,
		failures: fl, counts: newCounters(), progress: cfg.Progress}, nil
}

// Close closes the failure journal; the error is the first failure that could not be written.
func (c *Context) Close() error { return c.failures.close() }

// Fail records a per-item failure in failures.arrow; the run goes on. It is safe for
// concurrent use. err should be an *ItemError (see Itemf); any other error is recorded
// with class "error".
func (c *Context) Fail(item string, err error) {
	c.failures.add(c.stage, item, err)
	c.counts.add("failed", 1)
	c.Log.Warn("item failed", "stage", c.stage, "item", item, "err", err)
}

// Count adds n to a named counter that ends up in the stage's _SUCCESS.json and the manifest
// (for example "lesions", "bytes", "skipped").
func (c *Context) Count(name string, n int64) { c.counts.add(name, n) }

// Counts returns the counters so far.
func (c *Context) Counts() map[string]int64 { return c.counts.snapshot() }

// Failures reads back the failures this stage recorded (for tests and tools).
func (c *Context) Failures() ([]Failure, error) { return readJournal(c.failures.path) }

// Progress returns the stage's progress bar, set to total items (0 if unknown yet).
func (c *Context) Progress(total int64) Bar {
	if c.bar == nil {
		c.bar = c.progress.Start(c.stage, total)
	} else if total > 0 {
		c.bar.SetTotal(total)
	}
	return c.bar
}

// AllItems returns the process's items in the source's order: all of them, whichever arrive
// through the stream. A stage that writes a table over its items uses it.
func (c *Context) AllItems() []Item { return c.items }

// Streamed reports whether the items arrive from an upstream stage of the same segment (else
// every item of the process comes by, including those an earlier stage failed).
func (c *Context) Streamed() bool { return c.in != nil }

// Each runs do on the stage's items, workers at a time: those the upstream stage hands on when
// it runs in the same segment, else every item of the process. An item for which do returns
// nil goes on to the next stage; an *ItemError is recorded in failures.arrow and the item goes
// no further; any other error stops the stage, and the run, with that error as the cause. Each
// returns when every item is done, or the first such error, or the cancellation cause.
//
// It is the one worker pool of the streaming stages: bounded channels give backpressure from
// the slowest stage back to the first.
func (c *Context) Each(ctx context.Context, workers int, do func(ctx context.Context, it Item) error) error {
	g, gctx := errgroup.WithContext(ctx)
	in := c.in
	if in == nil {
		ch := make(chan Item)
		g.Go(func() error {
			defer close(ch)
			for _, it := range c.items {
				select {
				case ch <- it:
				case <-gctx.Done():
					return context.Cause(gctx)
				}
			}
			return nil
		})
		in = ch
	}
	bar := c.Progress(int64(len(c.items)))
	for range max(workers, 1) {
		g.Go(func() error {
			for {
				var it Item
				var ok bool
				select {
				case it, ok = <-in:
					if !ok {
						return nil
					}
				case <-gctx.Done():
					return context.Cause(gctx)
				}
				if err := c.finish(gctx, it, do(gctx, it)); err != nil {
					return err
				}
				bar.Add(1)
			}
		})
	}
	return g.Wait()
}

// finish hands a done item on, records an item failure, or returns the error that stops.
func (c *Context) finish(ctx context.Context, it Item, err error) error {
	var ie *ItemError
	switch {
	case err == nil:
		return c.emit(ctx, it)
	case errors.As(err, &ie) && ctx.Err() == nil:
		c.Fail(it.ID, err)
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return err
}

// emit hands a finished item to the downstream stage, if there is one in this segment.
func (c *Context) emit(ctx context.Context, it Item) error {
	if c.out == nil {
		return nil
	}
	select {
	case c.out <- it:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
