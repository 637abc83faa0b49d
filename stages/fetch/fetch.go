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
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectome/gcsobj"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/preprocess"
	"connectome/tables"
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
	store   gcsobj.ObjectStore
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
func New(s Settings, reg *models.Registry, store gcsobj.ObjectStore, planner SlicePlanner) *Stage {
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
func (st *Stage) Name() string { return pipeline.StageFetch }

// Version implements pipeline.Stage.
func (st *Stage) Version() string { return Version }

// Streams implements pipeline.Streamer: lesions go to preprocess as their slices arrive.
func (st *Stage) Streams() bool { return true }

// Sharding implements pipeline.ShardAware: a shard fetches its own lesions' slices.
func (st *Stage) Sharding() pipeline.Sharding { return pipeline.ShardEach }

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
	key  gcsobj.IDCKey
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

func (st *Stage) makePlan(lesions []tables.Lesion, instances []tables.Instance, crops []crop, cacheDir string, log *slog.Logger) *plan {
	bySeries := map[string][]tables.Instance{}
	for _, in := range instances {
		bySeries[in.SeriesInstanceUID] = append(bySeries[in.SeriesInstanceUID], in)
	}
	p := &plan{lesions: map[string]*lesionPlan{}, byKey: map[string]*object{}}
	for _, l := range lesions {
		lp := &lesionPlan{lesion: l}
		p.lesions[l.LesionID] = lp
		p.order = append(p.order, l.LesionID)
		series := bySeries[l.SeriesInstanceUID]
		if len(series) == 0 {
			lp.err = pipeline.Itemf(pipeline.ClassInput, l.LesionID, "plan: series %s has no instances in the instances table", l.SeriesInstanceUID)
			continue
		}
		lp.seriesObjects = len(series)
		for _, in := range series {
			lp.seriesBytes += in.InstanceSize
		}
		sops, cropErrs, err := planLesion(st.planner, series, l, crops)
		lp.cropErrs = cropErrs
		if err != nil {
			lp.err = pipeline.Itemf(pipeline.ClassGeometry, l.LesionID, "plan slices of series %s: %w", l.SeriesInstanceUID, err)
			continue
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
	}
	return p
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
	k, err := gcsobj.ParseIDCURL(in.GCSURL)
	switch {
	case err != nil:
		o.bad = fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	case k.Series != in.CRDCSeriesUUID || k.Instance != in.CRDCInstanceUUID:
		o.bad = fmt.Errorf("instance %s: gcs_url %s does not match crdc uuids %s/%s", in.SOPInstanceUID, in.GCSURL, in.CRDCSeriesUUID, in.CRDCInstanceUUID)
	default:
		o.key = k
		o.path, o.bad = CachePath(cacheDir, in)
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
		return pipeline.Haltf("%w", err)
	}
	log := sc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	specs, err := st.reg.Select(st.s.Models)
	if err != nil {
		return pipeline.Haltf("fetch.models: %w", err)
	}
	lesions, _, err := tables.ReadLesions(filepath.Join(sc.RunDir, pipeline.StageCohort, "lesions.arrow"))
	if err != nil {
		return pipeline.Haltf("read lesions: %w", err)
	}
	lesions = pipeline.ShardOf(lesions, func(l tables.Lesion) string { return l.LesionID }, sc.Shard)
	instances, _, err := tables.ReadInstances(filepath.Join(sc.RunDir, pipeline.StageCohort, "instances.arrow"))
	if err != nil {
		return pipeline.Haltf("read instances: %w", err)
	}
	cacheDir := ResolveCacheDir(st.s.CacheDir, sc.RunDir)

	start := time.Now()
	p := st.makePlan(lesions, instances, cropsOf(specs, st.extra), cacheDir, log)
	st.reportPlan(p, sc, log, time.Since(start))

	if st.s.Source == SourceGCS {
		if st.store == nil {
			return pipeline.Haltf("fetch: source gcs needs a storage client")
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
			if o.size > 0 {
				missingBytes += o.size
			} else {
				missingBytes += unknownSize
			}
		}
	}
	if st.s.Source == SourceGCS {
		sc.Count("objects_cached", int64(cached))
		log.Info("fetch: cache checked", "cache_dir", cacheDir, "to_download", missing, "to_download_bytes", missingBytes,
			"already_cached", cached)
		if missing > 0 {
			if err := st.checkDisk(cacheDir, missingBytes); err != nil {
				return err
			}
		}
	}
	return st.stream(ctx, sc, p, log)
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

// stream downloads the objects of each lesion as the lesions arrive, Concurrency at a time,
// and hands a lesion on when all its objects are in the cache.
func (st *Stage) stream(parent context.Context, sc *pipeline.Context, p *plan, log *slog.Logger) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	timeout, _ := st.s.objectTimeout()
	var retries atomic.Int64
	dl := &gcsobj.Downloader{Store: st.store, Retries: st.s.Retries, Timeout: timeout,
		BackoffBase: st.backoffBase, BackoffMax: st.backoffMax,
		OnRetry: func(bucket, key string, attempt int, err error) {
			retries.Add(1)
			log.Debug("retrying object", "object", "gs://"+bucket+"/"+key, "attempt", attempt, "err", err)
		}}

	jobs := make(chan *object)
	var workers sync.WaitGroup
	for range st.s.Concurrency {
		workers.Go(func() {
			for o := range jobs {
				st.download(ctx, cancel, sc, dl, o)
			}
		})
	}

	all := make([]pipeline.Item, len(p.order))
	for i, id := range p.order {
		all[i] = pipeline.Item{ID: id}
	}
	bar := sc.Progress(int64(len(all)))
	var waiters sync.WaitGroup
	var emitted atomic.Int64
	in := sc.Items(ctx, all)
	handled := map[string]bool{}
dispatch:
	for {
		var it pipeline.Item
		var ok bool
		select {
		case it, ok = <-in:
			if !ok {
				break dispatch
			}
		case <-ctx.Done():
			break dispatch
		}
		if handled[it.ID] {
			continue // an item delivered twice is fetched and handed on once
		}
		handled[it.ID] = true
		lp := p.lesions[it.ID]
		switch {
		case lp == nil:
			sc.Fail(it.ID, pipeline.Itemf(pipeline.ClassInput, it.ID, "lesion is not in cohort/lesions.arrow"))
			bar.Add(1)
			continue
		case lp.err != nil:
			sc.Fail(it.ID, lp.err)
			bar.Add(1)
			continue
		}
		for _, o := range lp.objects {
			if !o.queued.CompareAndSwap(false, true) || st.s.Source == SourceLocal || o.cached || o.bad != nil {
				continue
			}
			select {
			case jobs <- o:
			case <-ctx.Done():
				break dispatch
			}
		}
		waiters.Go(func() {
			if st.finishLesion(ctx, sc, lp, log) {
				emitted.Add(1)
			}
			bar.Add(1)
		})
	}
	close(jobs)
	workers.Wait()
	waiters.Wait()
	sc.Count("lesions", emitted.Load())
	sc.Count("retries", retries.Load())
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// download fetches one object and records the outcome; a local disk failure halts the run.
func (st *Stage) download(ctx context.Context, cancel context.CancelCauseFunc, sc *pipeline.Context, dl *gcsobj.Downloader, o *object) {
	if ctx.Err() != nil {
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
	var de *gcsobj.Error
	if errors.As(err, &de) && de.Kind == gcsobj.KindDisk {
		if gcsobj.IsDiskFull(err) {
			cancel(pipeline.Haltf("DICOM cache is full: %w", err))
		} else {
			cancel(pipeline.Haltf("write DICOM cache: %w", err))
		}
	}
	o.finish(err)
}

// finishLesion waits for the lesion's objects and emits it, or records why it failed. It
// reports whether the lesion was emitted.
func (st *Stage) finishLesion(ctx context.Context, sc *pipeline.Context, lp *lesionPlan, log *slog.Logger) bool {
	id := lp.lesion.LesionID
	var failed []*object
	for _, o := range lp.objects {
		select {
		case <-o.done:
		case <-ctx.Done():
			return false
		}
		if o.err != nil {
			failed = append(failed, o)
		}
	}
	if ctx.Err() != nil {
		return false
	}
	if len(failed) > 0 {
		sc.Fail(id, itemError(id, lp, failed))
		return false
	}
	if err := sc.Emit(ctx, pipeline.Item{ID: id}); err != nil {
		return false
	}
	log.Debug("lesion fetched", "lesion", id, "objects", len(lp.objects))
	return true
}

// itemError describes a lesion's failed objects, classed by the first failure.
func itemError(id string, lp *lesionPlan, failed []*object) *pipeline.ItemError {
	first := failed[0]
	class := pipeline.ClassNetwork
	var de *gcsobj.Error
	switch {
	case first.bad != nil:
		class = pipeline.ClassInput
	case errors.Is(first.err, os.ErrNotExist):
		class = pipeline.ClassNotFound
	case errors.As(first.err, &de):
		class = map[gcsobj.Kind]string{
			gcsobj.KindNotFound: pipeline.ClassNotFound,
			gcsobj.KindChecksum: pipeline.ClassChecksum,
			gcsobj.KindTimeout:  pipeline.ClassTimeout,
			gcsobj.KindNetwork:  pipeline.ClassNetwork,
			gcsobj.KindInput:    pipeline.ClassInput,
			gcsobj.KindDisk:     pipeline.ClassUnknown,
		}[de.Kind]
	}
	more := ""
	if len(failed) > 1 {
		more = fmt.Sprintf(" (and %d more of its %d objects)", len(failed)-1, len(lp.objects))
	}
	return pipeline.Itemf(class, id, "fetch instance %s of series %s: %w%s", first.inst.SOPInstanceUID, lp.lesion.SeriesInstanceUID, first.err, more)
}
