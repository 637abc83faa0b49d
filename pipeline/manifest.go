package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names the engine owns inside a stage directory.
const (
	MarkerFile  = "_SUCCESS.json"
	startedFile = "_STARTED.json"
)

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
	// Outputs are the stage directory's files when the stage completed: a resumed run
	// trusts the marker only while each is there with its size and checksum.
	Outputs []Output `json:"outputs"`
}

// ReadMarker reads a stage's marker for a process (see ShardDir); ok is false when it does not
// exist.
func ReadMarker(runDir, stage string, s Shard) (m Marker, ok bool, err error) {
	dir := ShardDir(runDir, stage, s)
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("read marker of stage %s: %w", stage, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("marker %s of stage %s is corrupt (%v): the stage counts as not complete", filepath.Join(dir, MarkerFile), stage, err)
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
