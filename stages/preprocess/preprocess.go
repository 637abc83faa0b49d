// Package preprocess is the pipeline stage that turns each lesion's CT slices into the exact
// input tensor of every model (../shared/docs/preprocessing-spec.md), reading only the slices
// and pixels the crops need, and writes per-patch statistics and a QC preview.
package preprocess

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"connectome/internal/arrowfile"
	"connectome/internal/atomicfile"
	"connectome/internal/dicomio"
	"connectome/internal/layout"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/pipeline"
)

// Settings configure the stage.
type Settings struct {
	Models  []string `yaml:"models" json:"models"`   // model names; empty = every model of the registry
	Workers int      `yaml:"workers" json:"workers"` // lesions in parallel; 0 = the run's default
	QC      bool     `yaml:"qc" json:"qc"`           // write a QC preview of each lesion

	PipelineVersion string `yaml:"-" json:"-"`
	IDCVersion      string `yaml:"-" json:"-"`
	// CacheDir is the DICOM cache fetch fills when it is shared across runs (fetch.cache_dir);
	// empty means the run's own (see layout.Run.DICOMCache).
	CacheDir string `yaml:"-" json:"-"`
}

// DefaultSettings returns the defaults: all models, QC previews on.
func DefaultSettings() Settings { return Settings{QC: true} }

// Validate checks the settings.
func (s Settings) Validate() error {
	if s.Workers < 0 {
		return fmt.Errorf("workers %d: want 0 (default) or more", s.Workers)
	}
	seen := map[string]bool{}
	for _, m := range s.Models {
		if m == "" || seen[m] {
			return fmt.Errorf("models: empty or repeated name %q", m)
		}
		seen[m] = true
	}
	return nil
}

// Stage is the preprocess stage.
type Stage struct {
	s   Settings
	reg *models.Registry
}

// New returns the stage for settings s and model registry reg.
func New(s Settings, reg *models.Registry) *Stage { return &Stage{s: s, reg: reg} }

func (st *Stage) Name() string { return layout.Preprocess }

// Version 2: the QC previews moved into the stage's directory (preprocess/qc/), so a run
// directory of version 1 must not count as done.
func (st *Stage) Version() string { return "2" }

// Streams: lesions move on to embed as they finish.
func (st *Stage) Streams() bool { return true }

// Sharding: a shard preprocesses its own lesions (pipeline.ShardAware).
func (st *Stage) Sharding() pipeline.Sharding { return layout.Sharding(layout.Preprocess) }

// Published: the tensors and per-lesion records are this process's work files; the table and
// the QC previews are what other processes of a sharded run read (pipeline.Publisher), not
// the table's Parquet copy.
func (st *Stage) Published(rel string) bool {
	return !strings.HasPrefix(rel, layout.TensorsDir+"/") && !strings.HasPrefix(rel, layout.RecordsDir+"/") &&
		!arrowfile.IsParquetCopy(rel)
}

// Settings is what decides the output: the selected models' preprocessing and QC.
func (st *Stage) Settings() any {
	type named struct {
		Name       string            `yaml:"name" json:"name"`
		Preprocess models.Preprocess `yaml:"preprocess" json:"preprocess"`
	}
	var prep []named
	if specs, err := st.reg.Select(st.s.Models); err == nil {
		for _, s := range specs {
			prep = append(prep, named{s.Name, s.Preprocess})
		}
	}
	return struct {
		Models []named           `yaml:"models" json:"models"`
		QC     bool              `yaml:"qc" json:"qc"`
		QCPrep models.Preprocess `yaml:"qc_preprocess" json:"qc_preprocess"`
	}{prep, st.s.QC, QCCrop()}
}

// QCCrop is the preview patch the stage reads besides the models' crops: 1 mm, 64 mm, RAS,
// lung-to-soft-tissue window. It also gives the mean HU at the seed, so fetch must plan for it.
func QCCrop() models.Preprocess {
	return models.Preprocess{Axcodes: "RAS", Pixdim: [3]float64{1, 1, 1}, ROI: [3]int{64, 64, 64},
		HURange: [2]float64{-1000, 400}, Clamp: [2]float64{0, 1}}
}

// Run preprocesses every lesion (streamed from fetch when it runs too) and writes
// patches.arrow over all of them.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Halt(err)
	}
	specs, err := st.reg.Select(st.s.Models)
	if err != nil {
		return pipeline.Haltf("select the models to preprocess for: %w", err)
	}
	lay := layout.New(sc.RunDir, sc.Shard)
	w := &worker{st: st, sc: sc, specs: specs, lay: lay, cache: lay.DICOMCache(st.s.CacheDir),
		series: map[string]*seriesEntry{}}
	n := st.s.Workers
	if n <= 0 {
		n = sc.Workers
	}
	if err := sc.Each(ctx, n, w.lesion); err != nil {
		return err
	}
	return st.writeTable(sc, lay)
}

// writeTable gathers the per-lesion records of every lesion done so far into patches.arrow.
func (st *Stage) writeTable(sc *pipeline.Context, lay layout.Run) error {
	var rows []tables.Patch
	for _, it := range sc.AllItems() {
		p := lay.PatchRecord(it.ID)
		if !fileExists(p) {
			continue // failed or not attempted
		}
		rec, _, err := tables.ReadPatches(p)
		if err != nil {
			return pipeline.Haltf("read the patch record of lesion %s: %w", it.ID, err)
		}
		rows = append(rows, rec...)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].LesionID != rows[j].LesionID {
			return rows[i].LesionID < rows[j].LesionID
		}
		return rows[i].Model < rows[j].Model
	})
	md := tables.Metadata(st.s.PipelineVersion, st.s.IDCVersion, sc.ConfigHash, nil)
	if err := tables.WritePatches(lay.Patches(), rows, md); err != nil {
		return pipeline.Haltf("write patches table: %w", err)
	}
	sc.Count("patches", int64(len(rows)))
	return nil
}

type seriesEntry struct {
	once sync.Once
	s    *dicomio.Series
	err  error
}

type worker struct {
	st     *Stage
	sc     *pipeline.Context
	specs  []*models.Spec
	lay    layout.Run
	cache  string // the DICOM cache's root
	mu     sync.Mutex
	series map[string]*seriesEntry
}

// path resolves an instance's file: its local path, or where fetch put it in the DICOM cache.
// An instance whose uuids cannot name a cache file gets a path that does not exist, so that
// reading it fails as a missing file of that lesion.
func (w *worker) path(r tables.Instance) string {
	if r.LocalPath != "" {
		return r.LocalPath
	}
	p, err := layout.DICOMObject(w.cache, r.CRDCSeriesUUID, r.CRDCInstanceUUID)
	if err != nil {
		return filepath.Join(w.cache, "invalid-crdc-uuids", layout.FileName(r.SOPInstanceUID))
	}
	return p
}

// seriesOf builds a series' geometry once: from the instances table, or, where the table has
// no geometry, from the files' headers (all files must then be present).
func (w *worker) seriesOf(uid string, rows []tables.Instance) (*dicomio.Series, error) {
	w.mu.Lock()
	e, ok := w.series[uid]
	if !ok {
		e = &seriesEntry{}
		w.series[uid] = e
	}
	w.mu.Unlock()
	e.once.Do(func() {
		e.s, e.err = dicomio.FromInstances(rows, w.path)
		if e.err == nil || !errors.Is(e.err, dicomio.ErrGeometry) || len(rows) == 0 {
			return
		}
		var hs []dicomio.SliceHeader
		for i, r := range rows {
			h, _, err := dicomio.ReadHeader(w.path(r))
			if err != nil {
				e.err = err
				return
			}
			h.Index = i
			hs = append(hs, h)
		}
		e.s, e.err = dicomio.NewSeries(hs)
	})
	return e.s, e.err
}

// classify maps a reader error to a failure class.
func classify(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return pipeline.ClassNotFound
	case errors.Is(err, patch.ErrSeedOutside), errors.Is(err, dicomio.ErrGeometry):
		return pipeline.ClassGeometry
	default:
		return pipeline.ClassDICOM
	}
}

// lesion preprocesses one lesion. Per-lesion problems come back as *pipeline.ItemError; any
// other error (an output that cannot be written) halts the run.
func (w *worker) lesion(ctx context.Context, it pipeline.Item) error {
	sc, id := w.sc, it.ID
	ls, err := tables.LesionSeriesOf(it.Payload)
	if err != nil {
		return pipeline.Haltf("preprocess lesion %s: %w", id, err)
	}
	l := ls.Lesion
	if sc.Resume && w.done(id) {
		sc.Count("skipped", 1)
		return nil
	}
	if len(ls.Instances) == 0 {
		return pipeline.Itemf(pipeline.ClassNotFound, id, "series %s has no instances in the instances table", l.SeriesInstanceUID)
	}
	ser, err := w.seriesOf(l.SeriesInstanceUID, ls.Instances)
	if err != nil {
		return pipeline.Itemf(classify(err), id, "series %s: %w", l.SeriesInstanceUID, err)
	}
	res, err := Extract(ser, l.CenterMM, w.specs)
	if err != nil {
		return pipeline.Itemf(classify(err), id, "series %s, seed %v: %w", l.SeriesInstanceUID, l.CenterMM, err)
	}
	sc.Count("slices_read", int64(res.Load.Files))
	sc.Count("bytes_read", res.Load.Bytes)
	sc.Count("voxels_sampled", res.Stats.VoxelsSampled)
	recs := make([]tables.Patch, len(w.specs))
	for i, spec := range w.specs {
		t := res.Tensors[i]
		sum, err := writeTensor(w.lay.Tensor(spec.Name, id), t)
		if err != nil {
			return pipeline.Haltf("write the %s tensor of lesion %s: %w", spec.Name, id, err)
		}
		recs[i] = record(id, spec.Name, t, sum, res.MeanHU)
	}
	if w.st.s.QC {
		png, err := QCImage(res.QC, l.CenterMM, l.BoxMinMM, l.BoxMaxMM)
		if err != nil {
			return pipeline.Itemf(pipeline.ClassUnknown, id, "qc preview: %w", err)
		}
		if err := atomicfile.WriteBytes(w.lay.QCPreview(id), png); err != nil {
			return pipeline.Haltf("write the QC preview of lesion %s: %w", id, err)
		}
	}
	// the record (NaN-safe, so Arrow) is the lesion's done marker: written last
	md := tables.Metadata(w.st.s.PipelineVersion, w.st.s.IDCVersion, sc.ConfigHash, nil)
	if err := tables.WritePatchRecord(w.lay.PatchRecord(id), recs, md); err != nil {
		return pipeline.Haltf("write the patch record of lesion %s: %w", id, err)
	}
	sc.Count("lesions", 1)
	return ctx.Err()
}

// done reports whether an earlier attempt finished the lesion: its record and every tensor.
func (w *worker) done(id string) bool {
	if !fileExists(w.lay.PatchRecord(id)) {
		return false
	}
	for _, s := range w.specs {
		if !fileExists(w.lay.Tensor(s.Name, id)) {
			return false
		}
	}
	return !w.st.s.QC || fileExists(w.lay.QCPreview(id))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func record(id, model string, t *patch.Tensor, sum string, meanHU float64) tables.Patch {
	pl := t.Plan
	r := tables.Patch{LesionID: id, Model: model, FracPadded: t.FracOutside(), FracClipped: t.FracClipped(),
		MeanHU10mm: meanHU, SeedInAir: meanHU < airHU, SHA256: sum}
	for a := 0; a < 5; a++ {
		r.Shape[a] = int32(t.Shape[a])
	}
	for a := 0; a < 3; a++ {
		r.CropLo[a], r.CropHi[a] = int32(pl.Lo[a]), int32(pl.Hi[a])
		r.SeedIndex[a], r.GridShape[a] = int32(pl.C[a]), int32(pl.Grid.M[a])
	}
	return r
}

// airHU: a seed whose 10 mm neighbourhood averages below this is in air or aerated lung, not
// on a tumour.
const airHU = -900

// writeTensor writes t as .npy atomically and returns the SHA-256 of its float32 bytes.
func writeTensor(path string, t *patch.Tensor) (string, error) {
	h := sha256.New()
	err := atomicfile.Write(path, func(w io.Writer) error {
		return patch.WriteNPY(w, t.Shape[:], t.Data)
	})
	if err != nil {
		return "", err
	}
	buf := make([]byte, 4*len(t.Data))
	for i, v := range t.Data {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)), nil
}
