// Package layout is the one place that knows where everything of a run lives. Every path of a
// run directory, for every stage and for every process of a sharded run, is a method of Run;
// stages, the report, the demo and the tests ask it, and no code spells another stage's path.
//
// Each stage writes only under its own directory (<run>/<stage>, or <run>/<stage>/shard-i-of-N
// for a shard process), so the engine's clearing of a re-run stage removes everything it made.
// The one exception is the DICOM cache (<run>/dicom by default, or a shared --cache-dir): its
// files are named by IDC's immutable CRDC uuids and only ever added, so it is a cache, kept
// across re-runs, not an output.
package layout

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"connectome/internal/gcp"
	"connectome/pipeline"
)

// The stages, by name: each one's directory under the run directory.
const (
	Cohort     = "cohort"
	Fetch      = "fetch"
	Preprocess = "preprocess"
	Embed      = "embed"
	Similarity = "similarity"
	Report     = "report"
)

// Stages lists the stage names in run order.
func Stages() []string { return []string{Cohort, Fetch, Preprocess, Embed, Similarity, Report} }

// Sharding is each stage's part in a sharded run (the stages' Sharding methods return it):
// fetch, preprocess and embed run per shard, similarity in the merge or per shard by query
// rows, cohort and report once.
func Sharding(stage string) pipeline.Sharding {
	switch stage {
	case Fetch, Preprocess, Embed:
		return pipeline.ShardEach
	case Similarity:
		return pipeline.ShardEither
	}
	return pipeline.ShardNone
}

// Run is a run directory as one process sees it.
type Run struct {
	// Root is the run directory (the local working copy of a gs:// one).
	Root string
	// Shard is the process's part of a sharded run; the zero value when it is not sharded.
	Shard pipeline.Shard
}

// New returns the layout of the run directory root for the process's shard.
func New(root string, sh pipeline.Shard) Run { return Run{Root: root, Shard: sh} }

// StageDir is the stage's directory for this process: what the engine gives the stage as its
// Context.Dir.
func (r Run) StageDir(stage string) string {
	if Sharding(stage) == pipeline.ShardNone {
		return filepath.Join(r.Root, stage)
	}
	return pipeline.ShardDir(r.Root, stage, r.Shard)
}

// shardDirs are the stage's directories that hold its outputs for every process of the run:
// every shard's in a sharded run, else the stage's own.
func (r Run) shardDirs(stage string) []string {
	if !r.Shard.Sharded() || Sharding(stage) == pipeline.ShardNone {
		return []string{filepath.Join(r.Root, stage)}
	}
	var out []string
	for _, sh := range pipeline.AllShards(r.Shard.Count).Each() {
		out = append(out, pipeline.ShardDir(r.Root, stage, sh))
	}
	return out
}

// Cohort tables.

func (r Run) Lesions() string   { return filepath.Join(r.Root, Cohort, "lesions.arrow") }
func (r Run) Instances() string { return filepath.Join(r.Root, Cohort, "instances.arrow") }
func (r Run) Clinical() string  { return filepath.Join(r.Root, Cohort, "clinical.arrow") }

// DICOMCache is the root of the DICOM cache, <cache>/<crdc_series_uuid>/<crdc_instance_uuid>.dcm:
// cacheDir when set (shared across runs), else <run>/dicom.
func (r Run) DICOMCache(cacheDir string) string {
	if cacheDir != "" {
		return cacheDir
	}
	return filepath.Join(r.Root, DICOMDir)
}

// DICOMDir is the default DICOM cache's name under the run directory.
const DICOMDir = "dicom"

// DICOMObject is where an IDC instance lives in the cache rooted at cache:
// <cache>/<crdc_series_uuid>/<crdc_instance_uuid>.dcm. The uuids are checked first, so that a
// table value can never point outside the cache.
func DICOMObject(cache, seriesUUID, instanceUUID string) (string, error) {
	if !gcp.ValidUUID(seriesUUID) || !gcp.ValidUUID(instanceUUID) {
		return "", fmt.Errorf("crdc uuids %q/%q are not uuids", seriesUUID, instanceUUID)
	}
	return filepath.Join(cache, seriesUUID, instanceUUID+".dcm"), nil
}

// Preprocess outputs.

// Tensor is the model-input tensor of a lesion for a model (.npy), in this process's
// preprocess directory.
func (r Run) Tensor(model, lesionID string) string {
	return filepath.Join(r.StageDir(Preprocess), TensorsDir, FileName(model), FileName(lesionID)+".npy")
}

// TensorsDir holds the tensors inside the preprocess directory: work files that only this
// process's embed stage reads.
const TensorsDir = "tensors"

// PatchRecord is a lesion's row group of patches.arrow, written when the lesion is done.
func (r Run) PatchRecord(lesionID string) string {
	return filepath.Join(r.StageDir(Preprocess), RecordsDir, FileName(lesionID)+".arrow")
}

// RecordsDir holds the per-lesion patch records inside the preprocess directory (work files).
const RecordsDir = "records"

// Patches is the preprocess stage's table of every patch of this process.
func (r Run) Patches() string { return filepath.Join(r.StageDir(Preprocess), "patches.arrow") }

// QCPreview is a lesion's QC preview (.png), in this process's preprocess directory.
func (r Run) QCPreview(lesionID string) string {
	return filepath.Join(r.StageDir(Preprocess), qcDir, FileName(lesionID)+".png")
}

const qcDir = "qc"

// QCPreviews are the places a lesion's QC preview may be, for a process that reads every
// shard's (the report): one per shard in a sharded run.
func (r Run) QCPreviews(lesionID string) []string {
	var out []string
	for _, d := range r.shardDirs(Preprocess) {
		out = append(out, filepath.Join(d, qcDir, FileName(lesionID)+".png"))
	}
	return out
}

// Embed outputs.

// Embeddings is a model's embeddings table in this process's embed directory (for a shard,
// the shard's part of it).
func (r Run) Embeddings(model string) string {
	return filepath.Join(r.StageDir(Embed), FileName(model)+".arrow")
}

// EmbedParts is where the embed stage commits a model's batches as it goes (work files).
func (r Run) EmbedParts(model string) string {
	return filepath.Join(r.StageDir(Embed), PartsDir, FileName(model))
}

// PartsDir holds the committed batches inside the embed directory.
const PartsDir = "parts"

// EmbeddingModels lists the models that have an embeddings table in any of the run's embed
// directories (every shard's in a sharded run), sorted.
func (r Run) EmbeddingModels() ([]string, error) {
	seen := map[string]bool{}
	for _, d := range r.shardDirs(Embed) {
		paths, err := filepath.Glob(filepath.Join(d, "*.arrow"))
		if err != nil {
			return nil, fmt.Errorf("list embeddings in %s: %w", d, err)
		}
		for _, p := range paths {
			if m, ok := idOf(strings.TrimSuffix(filepath.Base(p), ".arrow")); ok {
				seen[m] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

// Similarity outputs.

// Edges is the edges table in this process's similarity directory (a shard's rows when a
// shard process computes similarity by query rows).
func (r Run) Edges() string { return filepath.Join(r.StageDir(Similarity), "edges.arrow") }

// Agreement is the model agreement table in this process's similarity directory.
func (r Run) Agreement() string { return filepath.Join(r.StageDir(Similarity), "agreement.arrow") }

// ShardEdges are the shards' edge tables that the merge gathers, in shard order.
func (r Run) ShardEdges() []string {
	var out []string
	for _, d := range r.shardDirs(Similarity) {
		out = append(out, filepath.Join(d, "edges.arrow"))
	}
	return out
}

// Report outputs.

// Page is the report's HTML map.
func (r Run) Page() string { return filepath.Join(r.Root, Report, "index.html") }

// FileName turns an id (a lesion id, a model name) into one safe path element: the id itself
// when it is made of letters, digits, '-', '_' and '.' only (and does not start with '.'),
// else the id with every other byte written as %XX. Distinct ids give distinct names, and no
// id can name a parent directory, a subdirectory or a hidden file.
func FileName(id string) string {
	safe := id != ""
	for i := 0; safe && i < len(id); i++ {
		safe = plain(id[i]) && id[0] != '.'
	}
	if safe {
		return id
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if plain(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%" // the empty id
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// idOf is the id FileName made name from; ok is false for a name FileName cannot make (a temp
// file, anything else in the directory).
func idOf(name string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			if !plain(c) || (i == 0 && c == '.') {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		if name == "%" {
			return "", true
		}
		if i+2 >= len(name) {
			return "", false
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	id := b.String()
	return id, FileName(id) == name
}
