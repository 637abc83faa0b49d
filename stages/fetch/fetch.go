// Package fetch is the pipeline stage that brings the CT slices the lesions' crops need into a
// local DICOM cache: it plans the exact slices from the slice geometry first, then downloads
// them from IDC's public buckets (anonymous, verified, retried, resumable) and hands each
// lesion to preprocess as soon as all its slices are on disk.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectome/internal/gcp"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/preprocess"
)

// Version changes when the stage fetches different objects for the same input and settings.
const Version = "1"

// unknownSize is assumed for the disk check when instance_size is unknown: NLST slices are
// about 0.5 MB, so this errs on the safe side.
const unknownSize = 1 << 20

// Stage is the fetch stage.
type Stage struct {
	s       Settings
	reg     *models.Registry
	store   gcp.ObjectStore
	planner SlicePlanner
	extra   []models.Preprocess

	// freeBytes reports the free space under dir; tests replace it.
	freeBytes func(dir string) (uint64, error)
	// backoffBase and backoffMax shape retry waits (zero: the downloader's defaults).
	backoffBase, backoffMax time.Duration
	// staleTempAge is the age past which temp files in the planned series directories
	// are removed at the start (see removeStaleTemps); tests replace it.
	staleTempAge time.Duration
}

// New returns the stage. store may be nil for source local; planner nil means PatchPlanner,
// the exact one. Besides the models' crops it plans for preprocess.QCCrop() (see WithExtraCrops).
// Settings are checked by Run (and by Validate, earlier, in the CLI).
func New(s Settings, reg *models.Registry, store gcp.ObjectStore, planner SlicePlanner) *Stage {
	if planner == nil {
		planner = PatchPlanner{}
	}
	return &Stage{s: s, reg: reg, store: store, planner: planner, extra: []models.Preprocess{preprocess.QCCrop()}, freeBytes: statfsFree,
		staleTempAge: defaultStaleTempAge}
}

// WithExtraCrops replaces the crops planned besides the models' (default: preprocess.QCCrop(), the QC patch preprocess reads too) with crops:
// everything preprocess reads must be planned, or it will find slices missing.
func (st *Stage) WithExtraCrops(crops ...models.Preprocess) *Stage {
	st.extra = crops
	return st
}

// Name implements pipeline.Stage.
func (st *Stage) Name() string { return layout.Fetch }

// Version implements pipeline.Stage.
func (st *Stage) Version() string { return Version }

// Streams implements pipeline.Streamer: lesions go to preprocess as their slices arrive.
func (st *Stage) Streams() bool { return true }

// MachineLocal implements pipeline.MachineLocal: the DICOM cache stays on the machine (a
// remote run directory excludes it), so a resumed run on a new machine fetches again what
// preprocess still needs; with the cache in place the stage only checks it.
func (st *Stage) MachineLocal() bool { return true }

// Sharding implements pipeline.ShardAware: a shard fetches its own lesions' slices.
func (st *Stage) Sharding() pipeline.Sharding { return layout.Sharding(layout.Fetch) }

type hashedSettings struct {
	Source     string              `yaml:"source"`
	CacheDir   string              `yaml:"cache_dir"`
	Models     []string            `yaml:"models"`
	Planner    string              `yaml:"planner"`
	ExtraCrops []models.Preprocess `yaml:"extra_crops"`
}

// Settings implements pipeline.Stage. Only what decides which files end up where is hashed:
// concurrency, retries, timeouts and the endpoint change how, not what.
func (st *Stage) Settings() any {
	return hashedSettings{Source: st.s.Source, CacheDir: st.s.CacheDir, Models: st.s.Models, Planner: st.planner.Name(), ExtraCrops: st.extra}
}

// object is one planned instance, shared by the lesions that need it.
type object struct {
	inst tables.Instance
	key  gcp.IDCKey
	path string
	size int64 // instance_size, 0 when unknown
	bad  error // the instance cannot be fetched (bad key); the lesions using it fail

	cached bool // a verified file was already in the cache when planned
	queued atomic.Bool
	done   chan struct{}
	err    error // set before done is closed
}

// plan is the whole fetch plan, computed before any download.
type plan struct {
	lesions map[string]*lesionPlan
	order   []string // lesion ids in table order
	objects []*object
	byKey   map[string]*object
}

func (st *Stage) makePlan(items []pipeline.Item, crops []crop, cacheDir string, log *slog.Logger) (*plan, error) {
	p := &plan{lesions: map[string]*lesionPlan{}, byKey: map[string]*object{}}
	for _, it := range items {
		ls, err := tables.LesionSeriesOf(it.Payload)
		if err != nil {
			return nil, pipeline.Haltf("plan lesion %s: %w", it.ID, err)
		}
		lp := st.planLesion(p, ls, crops, cacheDir, log)
		p.lesions[it.ID] = lp
		p.order = append(p.order, it.ID)
	}
	return p, nil
}

// planLesion plans the objects of one lesion, sharing those another lesion already needs.
func (st *Stage) planLesion(p *plan, ls *tables.LesionSeries, crops []crop, cacheDir string, log *slog.Logger) *lesionPlan {
	l, series := ls.Lesion, ls.Instances
	lp := &lesionPlan{lesion: l}
	if len(series) == 0 {
		lp.err = pipeline.Itemf(pipeline.ClassInput, l.LesionID, "plan: series %s has no instances in the instances table", l.SeriesInstanceUID)
		return lp
	}
	lp.seriesObjects = len(series)
	for _, in := range series {
		lp.seriesBytes += in.InstanceSize
	}
	sops, cropErrs, err := planSlices(st.planner, series, l, crops)
	lp.cropErrs = cropErrs
	if err != nil {
		lp.err = pipeline.Itemf(pipeline.ClassGeometry, l.LesionID, "plan slices of series %s: %w", l.SeriesInstanceUID, err)
		return lp
	}
	if len(cropErrs) > 0 {
		log.Warn("lesion planned with reservations; preprocess will record any crop it cannot make", "lesion", l.LesionID, "notes", strings.Join(cropErrs, "; "))
	}
	bySOP := make(map[string]tables.Instance, len(series))
	for _, in := range series {
		bySOP[in.SOPInstanceUID] = in
	}
	for _, sop := range sortedKeys(sops) {
		in := bySOP[sop]
		id := st.objectID(in)
		o := p.byKey[id]
		if o == nil {
			o = st.newObject(in, cacheDir)
			p.byKey[id] = o
			p.objects = append(p.objects, o)
		}
		lp.objects = append(lp.objects, o)
	}
	return lp
}

// objectID identifies an instance across lesions.
func (st *Stage) objectID(in tables.Instance) string {
	if st.s.Source == SourceLocal {
		return "local:" + in.LocalPath + "|" + in.SOPInstanceUID
	}
	return in.GCSURL + "|" + in.CRDCSeriesUUID + "/" + in.CRDCInstanceUUID
}

func (st *Stage) newObject(in tables.Instance, cacheDir string) *object {
	o := &object{inst: in, size: max(in.InstanceSize, 0), done: make(chan struct{})}
	if st.s.Source == SourceLocal {
		o.path = in.LocalPath
		if in.LocalPath == "" {
			o.bad = fmt.Errorf("instance %s has no local_path (source local)", in.SOPInstanceUID)
		}
		return o
	}
	k, err := gcp.ParseIDCURL(in.GCSURL)
	switch {
	case err != nil:
		o.bad = fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	case k.Series != in.CRDCSeriesUUID || k.Instance != in.CRDCInstanceUUID:
		o.bad = fmt.Errorf("instance %s: gcs_url %s does not match crdc uuids %s/%s", in.SOPInstanceUID, in.GCSURL, in.CRDCSeriesUUID, in.CRDCInstanceUUID)
	default:
		o.key = k
		if o.path, o.bad = layout.DICOMObject(cacheDir, in.CRDCSeriesUUID, in.CRDCInstanceUUID); o.bad != nil {
			o.bad = fmt.Errorf("instance %s: %w", in.SOPInstanceUID, o.bad)
		}
	}
	return o
}

// present reports whether a verified copy of o is already at its path. Files only get their
// final name after their checksum matched, so presence (and the expected size, when known)
// is enough.
func (o *object) present() bool {
	fi, err := os.Stat(o.path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return o.size <= 0 || fi.Size() == o.size
}

func (o *object) finish(err error) {
	o.err = err
	close(o.done)
}

// Run implements pipeline.Stage.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Halt(err)
	}
	specs, err := st.reg.Select(st.s.Models)
	if err != nil {
		return pipeline.Haltf("select the models to plan for: %w", err)
	}
	cacheDir := layout.New(sc.RunDir, sc.Shard).DICOMCache(st.s.CacheDir)
	start := time.Now()
	p, err := st.makePlan(sc.AllItems(), cropsOf(specs, st.extra), cacheDir, sc.Log)
	if err != nil {
		return err
	}
	st.reportPlan(p, sc, sc.Log, time.Since(start))
	if err := st.checkCache(p, sc, cacheDir); err != nil {
		return err
	}
	return st.stream(ctx, sc, p)
}

// checkCache marks the objects that are already there (or cannot be fetched) as finished and,
// for a download, prepares the cache: stale temp files removed, enough free disk.
func (st *Stage) checkCache(p *plan, sc *pipeline.Context, cacheDir string) error {
	log := sc.Log
	if st.s.Source == SourceGCS {
		if st.store == nil {
			return pipeline.Haltf("fetch from Cloud Storage: no storage client")
		}
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return pipeline.Haltf("create DICOM cache %s: %w", cacheDir, err)
		}
		// A killed process (this run's earlier try, or another run sharing the cache)
		// leaves its temp files behind; nothing else ever removes them.
		n := removeStaleTemps(p, st.staleTempAge, time.Now(), log)
		sc.Count("stale_temp_removed", int64(n))
		if n > 0 {
			log.Info("fetch: removed stale temp files from the cache", "files", n, "older_than", st.staleTempAge)
		}
	}
	var missing, cached int
	var missingBytes int64
	for _, o := range p.objects {
		switch {
		case o.bad != nil:
			o.finish(o.bad)
		case st.s.Source == SourceLocal:
			if _, err := os.Stat(o.path); err != nil {
				o.finish(err)
			} else {
				o.cached = true
				o.finish(nil)
			}
		case o.present():
			o.cached = true
			cached++
			o.finish(nil)
		default:
			missing++
			missingBytes += max(o.size, 0)
			if o.size <= 0 {
				missingBytes += unknownSize
			}
		}
	}
	if st.s.Source != SourceGCS {
		return nil
	}
	sc.Count("objects_cached", int64(cached))
	log.Info("fetch: cache checked", "cache_dir", cacheDir, "to_download", missing, "to_download_bytes", missingBytes,
		"already_cached", cached)
	if missing == 0 {
		return nil
	}
	return st.checkDisk(cacheDir, missingBytes)
}

func (st *Stage) reportPlan(p *plan, sc *pipeline.Context, log *slog.Logger, took time.Duration) {
	var objs, seriesObjs int
	var bytes, seriesBytes int64
	seen := map[string]bool{}
	failed := 0
	for _, id := range p.order {
		lp := p.lesions[id]
		if lp.err != nil {
			failed++
			continue
		}
		if !seen[lp.lesion.SeriesInstanceUID] {
			seen[lp.lesion.SeriesInstanceUID] = true
			seriesObjs += lp.seriesObjects
			seriesBytes += lp.seriesBytes
		}
		log.Debug("fetch plan", "lesion", id, "objects", len(lp.objects), "series_objects", lp.seriesObjects)
	}
	for _, o := range p.objects {
		objs++
		bytes += o.size
	}
	frac := 0.0
	if seriesBytes > 0 {
		frac = float64(bytes) / float64(seriesBytes)
	}
	sc.Count("lesions_planned", int64(len(p.order)-failed))
	sc.Count("objects_planned", int64(objs))
	sc.Count("bytes_planned", bytes)
	sc.Count("objects_whole_series", int64(seriesObjs))
	sc.Count("bytes_whole_series", seriesBytes)
	log.Info("fetch plan", "planner", st.planner.Name(), "lesions", len(p.order), "unplannable", failed,
		"series", len(seen), "objects", objs, "bytes", bytes, "whole_series_objects", seriesObjs,
		"whole_series_bytes", seriesBytes, "fraction_of_series_bytes", fmt.Sprintf("%.3f", frac),
		"ms", took.Milliseconds())
}

// checkDisk halts before the first byte when the cache's disk cannot take the download plus
// MinFreeBytes.
func (st *Stage) checkDisk(dir string, need int64) error {
	free, err := st.freeBytes(dir)
	if err != nil {
		return pipeline.Haltf("free space of %s: %w", dir, err)
	}
	want := uint64(need) + uint64(st.s.MinFreeBytes)
	if free < want {
		return pipeline.Haltf("not enough disk space in %s: the download needs %s plus fetch.min_free_bytes %s, but only %s is free (short by %s)",
			dir, human(uint64(need)), human(uint64(st.s.MinFreeBytes)), human(free), human(want-free))
	}
	return nil
}

func statfsFree(dir string) (uint64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return fs.Bavail * uint64(fs.Bsize), nil
}

func human(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(b)/float64(div), "KMGTPE"[exp], b)
}

// stream hands each lesion on once all its objects are in the cache. The objects of the lesions
// in progress download Concurrency at a time; an object two lesions share downloads once.
func (st *Stage) stream(ctx context.Context, sc *pipeline.Context, p *plan) error {
	var retries, emitted atomic.Int64
	dl := st.s.Downloader(st.store)
	dl.BackoffBase, dl.BackoffMax = st.backoffBase, st.backoffMax
	dl.OnRetry = func(bucket, key string, attempt int, err error) {
		retries.Add(1)
		sc.Log.Debug("retrying object", "object", "gs://"+bucket+"/"+key, "attempt", attempt, "err", err)
	}
	slots := make(chan struct{}, st.s.Concurrency)
	var downloads sync.WaitGroup
	err := sc.Each(ctx, st.s.Concurrency, func(ctx context.Context, it pipeline.Item) error {
		lp := p.lesions[it.ID]
		if lp == nil {
			return pipeline.Itemf(pipeline.ClassInput, it.ID, "lesion was not planned: it is not among this run's lesions")
		}
		if lp.err != nil {
			return lp.err
		}
		for _, o := range lp.objects {
			if o.queued.CompareAndSwap(false, true) && st.s.Source != SourceLocal && !o.cached && o.bad == nil {
				downloads.Go(func() { st.download(ctx, sc, dl, slots, o) })
			}
		}
		if err := st.waitLesion(ctx, lp); err != nil {
			return err
		}
		emitted.Add(1)
		sc.Log.Debug("lesion fetched", "lesion", it.ID, "objects", len(lp.objects))
		return nil
	})
	downloads.Wait()
	sc.Count("lesions", emitted.Load())
	sc.Count("retries", retries.Load())
	return err
}

// download fetches one object, taking one of the slots, and records the outcome. A local disk
// failure becomes a halt, which the lesions waiting for the object return.
func (st *Stage) download(ctx context.Context, sc *pipeline.Context, dl *gcp.Downloader, slots chan struct{}, o *object) {
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-ctx.Done():
		o.finish(context.Cause(ctx))
		return
	}
	res, err := dl.Download(ctx, o.key.Bucket, o.key.Key(), o.path, o.size)
	if err == nil {
		sc.Count("objects_downloaded", 1)
		sc.Count("bytes_downloaded", res.Bytes)
		o.finish(nil)
		return
	}
	var de *gcp.Error
	if errors.As(err, &de) && de.Kind == gcp.KindDisk {
		if gcp.IsDiskFull(err) {
			err = pipeline.Haltf("DICOM cache is full: %w", err)
		} else {
			err = pipeline.Haltf("write DICOM cache: %w", err)
		}
	}
	o.finish(err)
}

// waitLesion waits for the lesion's objects: nil when all are there, the item error that
// names the failed ones, a halt, or the cancellation cause.
func (st *Stage) waitLesion(ctx context.Context, lp *lesionPlan) error {
	var failed []*object
	for _, o := range lp.objects {
		select {
		case <-o.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if pipeline.IsHalt(o.err) {
			return o.err
		}
		if o.err != nil {
			failed = append(failed, o)
		}
	}
	if len(failed) > 0 {
		return itemError(lp.lesion.LesionID, lp, failed)
	}
	return nil
}

// itemError describes a lesion's failed objects, classed by the first failure.
func itemError(id string, lp *lesionPlan, failed []*object) *pipeline.ItemError {
	first := failed[0]
	class := pipeline.ClassNetwork
	var de *gcp.Error
	switch {
	case first.bad != nil:
		class = pipeline.ClassInput
	case errors.Is(first.err, os.ErrNotExist):
		class = pipeline.ClassNotFound
	case errors.As(first.err, &de):
		class = de.Kind.Class()
	}
	more := ""
	if len(failed) > 1 {
		more = fmt.Sprintf(" (and %d more of its %d objects)", len(failed)-1, len(lp.objects))
	}
	return pipeline.Itemf(class, id, "fetch instance %s of series %s: %w%s", first.inst.SOPInstanceUID, lp.lesion.SeriesInstanceUID, first.err, more)
}
