// Package pipeline is the engine every stage plugs into: stage selection and resume,
// completion markers, per-item failures as data, streaming of items between stages, shards,
// a run directory kept elsewhere, and the run manifest. It knows no stage by name: the stage
// list, in run order, and the source of the streamed items come from the caller.
package pipeline

import (
	"context"
)

// Stage is one step of the pipeline as the runner sees it.
type Stage interface {
	// Name is the stage's name: the name of its directory under the run directory and what
	// --from, --to and --only take.
	Name() string
	// Version changes whenever the stage's output for the same input and config changes;
	// it is part of the config hash, so bumping it re-runs the stage on resume.
	Version() string
	// Settings returns the settings that decide the stage's output. They are hashed (as YAML)
	// with the version and the upstream stage's hash; a change re-runs this stage and every
	// stage after it.
	Settings() any
	// Run does the stage's work. It returns nil when every item was attempted (failed items
	// are reported through Context.Fail and do not make Run fail), a *HaltError or any other
	// error to stop the whole run, or ctx.Err() when cancelled.
	Run(ctx context.Context, sc *Context) error
}

// Streamer is implemented by stages that work item by item and hand each finished item to the
// next stage while they run. Consecutive streaming stages that both run are connected by a
// bounded channel and run concurrently; each gets the run's items (see ItemSource).
type Streamer interface{ Streams() bool }

// SelfContained is implemented by a stage that can run without its upstream stages' outputs
// when it says so (similarity fed with --embeddings files).
type SelfContained interface{ SelfContained() bool }

// Preflighter is implemented by a stage that can find a problem that would halt it (no CUDA
// provider, a missing model file) before any stage runs, so that a run does not query,
// download and crop for hours only to stop at that stage.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// MachineLocal is implemented by a stage whose real output stays on the machine that ran
// it (fetch's DICOM cache, never part of a remote run directory): its marker says the stage
// was done, not that this machine holds the output, and a new machine after a preemption
// does not. Such a stage runs again whenever the stage right after it runs, and is expected
// to find its output in place cheaply when it is there (a warm cache: no download).
type MachineLocal interface{ MachineLocal() bool }

// Publisher is implemented by a stage whose directory holds work files that no other process
// reads (a shard's intermediate tensors, uncommitted parts). Published reports whether the
// file at rel (slash-separated, relative to the stage's directory) is an output that other
// processes of a sharded run may need; without it every file is.
type Publisher interface{ Published(rel string) bool }

// Item is one unit of work that streams between stages.
type Item struct {
	// ID names the item in failures.arrow and decides its shard (see Shard.Owns).
	ID string
	// Payload is what the item source attached (for the connectome: the lesion's rows). It
	// travels with the item from stage to stage unchanged.
	Payload any
}

// ItemSource lists a run's items. The runner calls it once per process, when the first
// streaming stage is about to run (after the stages before it are complete), and keeps the
// process's shard of them.
type ItemSource func(ctx context.Context) ([]Item, error)
