// Package demorun runs the offline demo: it generates (or reuses) the synthetic cohort of
// package demo, serves it from an in-process BigQuery emulator (rows derived from the DICOM
// objects, in IDC's dicom_all and clinical schemas) and an in-process fake Cloud Storage
// (IDC's bucket and object keys), writes the demo encoders, and runs the production stages
// (package assemble, the same code as `connectome run`) against those endpoints. The demo
// command and the end-to-end test both call Run.
package demorun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"connectome/internal/atomicfile"
	"connectome/internal/demo"
	"connectome/internal/encoders"
	"connectome/internal/gcp"
	"connectome/internal/idcfake"
	"connectome/internal/layout"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages"
)

// Options configure a demo run.
type Options struct {
	Config string // pipeline config (configs/demo.yaml)
	// RunDir overrides the config's run_dir when set; gs://bucket/prefix keeps the run
	// directory in Cloud Storage (STORAGE_EMULATOR_HOST names the server) through a local
	// working copy, WorkDir, as `connectome run` does.
	RunDir    string
	WorkDir   string // working copy of a gs:// run directory (default: gcp.WorkDir)
	ModelsDir string // overrides embed.models_dir (where the demo encoders are written) when set
	CohortDir string // cache of generated cohorts, one folder per seed and size
	Patients  int
	Seed      int64
	// Resume keeps what an earlier run of the same cohort and config finished.
	Resume  bool
	Workers int
	// Version is the pipeline version written into the tables and the manifest.
	Version string
	// Command is recorded in the run manifest.
	Command  []string
	Log      *slog.Logger
	Progress pipeline.Progress // nil: no progress display
}

// Result is what a finished demo run produced.
type Result struct {
	RunDir    string
	Report    string // absolute path of report/index.html
	Cohort    *demo.Manifest
	Summary   *pipeline.Summary
	Code      int  // exit status as `connectome run` gives it (0, 3 with item failures)
	Services  bool // false when every stage was already complete and no emulator was started
	Agreement []demo.KindAgreement
	Elapsed   time.Duration
}

// Run runs the demo. The error is a halt (the exit status is then in the Result when there is
// one, or 1).
func Run(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := stages.LoadConfig(o.Config, stages.Overrides{RunDir: o.RunDir, Workers: o.Workers, ModelsDir: o.ModelsDir})
	if err != nil {
		return nil, err
	}

	// 1. The cohort: generated once per seed and size, then reused.
	cdir := filepath.Join(o.CohortDir, fmt.Sprintf("seed-%d-patients-%d", o.Seed, o.Patients))
	man, err := generate(ctx, cdir, o, log)
	if err != nil {
		return nil, fmt.Errorf("generate the cohort: %w", err)
	}

	// 2. The demo encoders, written by our ONNX writer (kept when already there).
	reg, err := models.Load(cfg.ModelsFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Embed.ModelsDir, 0o755); err != nil {
		return nil, err
	}
	if !modelsInPlace(cfg.Embed.ModelsDir, reg) {
		if _, err := encoders.WriteDemoModels(cfg.Embed.ModelsDir, reg); err != nil {
			return nil, fmt.Errorf("write the demo encoders: %w", err)
		}
	}

	// A run directory in Cloud Storage: the stages work on a local copy, synced at stage
	// boundaries, as in `connectome run`.
	var remote *gcp.Dir
	if gcp.IsURL(cfg.RunDir) {
		var closeRemote func() error
		if remote, closeRemote, err = openRemote(ctx, cfg.RunDir, o.WorkDir); err != nil {
			return nil, err
		}
		defer closeRemote()
		remote.Log = log
		cfg.RunDir = remote.Local
	}

	// 3. Resume only a run of the same cohort: the pipeline's config hashes do not see the data.
	stamp := cohortStamp{Generator: man.Generator, Seed: man.Seed, Patients: man.Patients}
	resume := o.Resume && sameStamp(ctx, cfg.RunDir, remote, stamp)
	if o.Resume && !resume {
		log.Info("the run directory holds no run of this cohort: starting over", "run_dir", cfg.RunDir)
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(cfg.RunDir, stampFile), stamp); err != nil {
		return nil, err
	}

	// 4. The services, unless every stage is already complete (then no stage calls them).
	res := &Result{RunDir: cfg.RunDir, Cohort: man}
	ep := unused
	if !resume || remote != nil || !complete(ctx, cfg, o.Version, log) {
		svc, err := startServices(ctx, man, cfg, log)
		if err != nil {
			return nil, err
		}
		defer svc.Close()
		ep = svc.endpoints
		cfg.Cohort.BillingProject = cfg.Cohort.BQProject // the emulator's one project runs the jobs
		res.Services = true
	}

	// 5. The pipeline: the production stages and runner.
	chain, err := stages.Build(ctx, cfg, o.Version, ep, log)
	if err != nil {
		return nil, err
	}
	defer chain.Close()
	popt := pipeline.Options{
		Resume: resume, Log: log, Progress: o.Progress, Command: o.Command,
		Versions: map[string]string{"pipeline": o.Version, "idc": cfg.Cohort.IDCRelease + " (synthetic demo cohort)",
			"demo_generator": man.Generator},
	}
	if remote != nil {
		popt.Remote = remote
	}
	r, err := chain.NewRunner(popt)
	if err != nil {
		return nil, err
	}
	sum, err := r.Run(ctx)
	res.Summary, res.Code = sum, pipeline.ExitCode(sum, err)
	if err != nil {
		return res, err
	}
	res.Report, _ = filepath.Abs(layout.New(cfg.RunDir, pipeline.Shard{}).Page())
	if ag, err := man.Agreement(cfg.RunDir); err != nil {
		log.Warn("cannot compare the map with the generator's ground truth", "err", err)
	} else {
		res.Agreement = ag
	}
	if err := man.WriteTruthTable(cfg.RunDir); err != nil {
		log.Warn("cannot write the generator's ground truth beside the run", "err", err)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// modelsInPlace reports whether every encoder of the registry is already in dir with the
// checksum the registry records: building them again takes seconds.
func modelsInPlace(dir string, reg *models.Registry) bool {
	for _, m := range reg.Models {
		b, err := os.ReadFile(filepath.Join(dir, m.ONNX))
		if err != nil || m.SHA256 == "" {
			return false
		}
		sum := sha256.Sum256(b)
		if !strings.EqualFold(hex.EncodeToString(sum[:]), m.SHA256) {
			return false
		}
	}
	return true
}

// unused are endpoints that nothing listens on: a run whose stages are all complete calls no
// service, and the endpoints are not part of any config hash.
var unused = stages.Endpoints{BigQuery: "http://127.0.0.1:1", GCS: "http://127.0.0.1:1"}

// cohortStamp records which cohort a run directory was made from.
type cohortStamp struct {
	Generator string `json:"generator"`
	Seed      int64  `json:"seed"`
	Patients  int    `json:"patients"`
}

// StampFile, in the run directory, names the cohort the run was made from.
const stampFile = "demo-cohort.json"

// sameStamp reads the stamp of the run directory: the bucket's copy when there is one (a
// new machine's working copy is empty).
func sameStamp(ctx context.Context, runDir string, remote *gcp.Dir, want cohortStamp) bool {
	var got cohortStamp
	var b []byte
	var err error
	if remote != nil {
		var buf bytes.Buffer
		err = remote.Bucket.Read(ctx, remote.Object(stampFile), &buf)
		b = buf.Bytes()
	} else {
		b, err = os.ReadFile(filepath.Join(runDir, stampFile))
	}
	if err != nil || json.Unmarshal(b, &got) != nil {
		return false
	}
	return got == want
}

// openRemote opens a gs:// run directory with its working copy; the DICOM cache, large and
// re-fetchable, stays local.
func openRemote(ctx context.Context, runDir, workDir string) (*gcp.Dir, func() error, error) {
	u, err := gcp.ParseURL(runDir)
	if err != nil {
		return nil, nil, &pipeline.UsageError{Msg: "--run-dir: " + err.Error()}
	}
	if workDir == "" {
		if workDir, err = gcp.WorkDir(u); err != nil {
			return nil, nil, err
		}
	}
	d, closeFn, err := gcp.Open(ctx, u, workDir, gcp.ClientOptions{})
	if err != nil {
		return nil, nil, pipeline.Halt(err)
	}
	d.Exclude = []string{layout.DICOMDir}
	return d, closeFn, nil
}

// complete tells whether a resumed run would skip every stage: each stage's marker is there
// with the config hash the runner computes now.
func complete(ctx context.Context, cfg stages.Config, version string, log *slog.Logger) bool {
	quiet := slog.New(slog.DiscardHandler)
	chain, err := stages.Build(ctx, cfg, version, unused, quiet)
	if err != nil {
		return false
	}
	defer chain.Close()
	r, err := chain.NewRunner(pipeline.Options{Resume: true, Log: quiet})
	if err != nil || !r.Complete() {
		return false
	}
	log.Info("every stage is already complete: the emulators are not needed", "run_dir", cfg.RunDir)
	return true
}

func generate(ctx context.Context, dir string, o Options, log *slog.Logger) (*demo.Manifest, error) {
	if m, err := demo.Open(dir); err == nil && m.Seed == o.Seed && m.Patients == o.Patients {
		log.Info("synthetic cohort ready", "dir", dir, "patients", m.Patients, "objects", len(m.Objects))
		return m, nil
	}
	log.Info("generating the synthetic cohort (once; later runs reuse it)", "dir", dir, "patients", o.Patients, "seed", o.Seed)
	t0 := time.Now()
	var mu sync.Mutex
	last := t0
	// A log line every few seconds: the engine's progress bars belong to the stages.
	m, err := demo.Generate(ctx, dir, demo.Options{Seed: o.Seed, Patients: o.Patients, Workers: o.Workers,
		Progress: func(done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) > 3*time.Second {
				last = time.Now()
				el := time.Since(t0).Seconds()
				eta := time.Duration(el / float64(done) * float64(total-done) * float64(time.Second))
				log.Info("generating", "files", done, "total", total, "eta", eta.Round(time.Second).String())
			}
		}})
	if err != nil {
		return nil, err
	}
	log.Info("synthetic cohort written", "dir", dir, "objects", len(m.Objects), "elapsed", since(t0))
	return m, nil
}

// services are the in-process emulators the pipeline talks to.
type services struct {
	bq        *lazyBigQuery
	gcs       *fakestorage.Server
	http      *httptest.Server
	endpoints stages.Endpoints
}

func (s *services) Close() {
	if s.http != nil {
		s.http.Close()
	}
	if s.gcs != nil {
		s.gcs.Stop()
	}
	if s.bq != nil {
		s.bq.Close()
	}
}

func startServices(ctx context.Context, man *demo.Manifest, cfg stages.Config, log *slog.Logger) (*services, error) {
	svc := &services{}
	svc.bq = &lazyBigQuery{start: func() (*idcfake.Emulator, error) { return startBigQuery(ctx, man, cfg, log) }}
	svc.bq.ts = httptest.NewServer(svc.bq)
	t1 := time.Now()
	var err error
	svc.gcs, err = serveObjects(man, log)
	if err != nil {
		svc.Close()
		return nil, err
	}
	svc.http = httptest.NewServer(svc.gcs.HTTPHandler())
	svc.endpoints = stages.Endpoints{BigQuery: svc.bq.ts.URL, GCS: svc.http.URL}
	log.Info("fake Cloud Storage ready", "endpoint", svc.http.URL, "bucket", man.Bucket, "objects", len(man.Objects),
		"elapsed", since(t1))
	return svc, nil
}

// lazyBigQuery answers at the emulator's endpoint at once and starts the emulator, which
// takes seconds to load its tables, on the first request: a resumed run whose cohort stage
// is complete never asks for it.
type lazyBigQuery struct {
	ts    *httptest.Server
	start func() (*idcfake.Emulator, error)
	once  sync.Once
	emu   *idcfake.Emulator
	proxy *httputil.ReverseProxy
	err   error
}

func (l *lazyBigQuery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.once.Do(func() {
		if l.emu, l.err = l.start(); l.err != nil {
			return
		}
		u, err := url.Parse(l.emu.Endpoint())
		if err != nil {
			l.err = err
			return
		}
		l.proxy = httputil.NewSingleHostReverseProxy(u)
	})
	if l.err != nil {
		http.Error(w, "BigQuery emulator: "+l.err.Error(), http.StatusInternalServerError)
		return
	}
	l.proxy.ServeHTTP(w, r)
}

func (l *lazyBigQuery) Close() {
	l.ts.Close()
	if l.emu != nil {
		l.emu.Close()
	}
}

// startBigQuery starts the emulator loaded with the rows derived from the cohort.
func startBigQuery(ctx context.Context, man *demo.Manifest, cfg stages.Config, log *slog.Logger) (*idcfake.Emulator, error) {
	t0 := time.Now()
	tables, err := man.Tables(cfg.Cohort.IDCRelease)
	if err != nil {
		return nil, fmt.Errorf("derive the BigQuery rows from the cohort: %w", err)
	}
	derived := time.Since(t0)
	emu, err := idcfake.Start(cfg.Cohort.BQProject)
	if err != nil {
		return nil, err
	}
	if err := emu.Load(ctx, tables); err != nil {
		emu.Close()
		return nil, err
	}
	rows := 0
	for _, t := range tables {
		rows += t.Rows
	}
	log.Info("BigQuery emulator ready", "endpoint", emu.Endpoint(), "project", emu.Project, "rows", rows,
		"derive", derived.Round(100*time.Millisecond).String(), "elapsed", since(t0))
	return emu, nil
}

// gcsRoot and gcsSeeded, in the cohort directory: fake-gcs-server's file-system storage,
// filled once from the cohort's objects, and the marker written after it was filled.
const (
	gcsRoot   = "gcs"
	gcsSeeded = "gcs-seeded.json"
)

// serveObjects starts fake-gcs-server over file-system storage kept in the cohort directory:
// the first run copies the objects in (once), later runs serve them at once, and memory stays
// small (the in-memory backend holds every object two or three times and fills in quadratic
// time). It has no listener of its own: the caller serves its handler on 127.0.0.1, and
// PublicHost "127.0.0.1" routes the XML-API downloads (toolchain.md §4.1).
func serveObjects(man *demo.Manifest, log *slog.Logger) (*fakestorage.Server, error) {
	root := filepath.Join(man.Dir, gcsRoot)
	marker := filepath.Join(man.Dir, gcsSeeded)
	// The bucket was filled from exactly this manifest (which lists every object's SHA-256);
	// anything else, such as a regenerated cohort in the same folder, is filled again.
	want, err := os.ReadFile(filepath.Join(man.Dir, demo.ManifestFile))
	if err != nil {
		return nil, err
	}
	type seededMarker struct {
		Objects  int    `json:"objects"`
		Manifest string `json:"manifest_sha256"`
	}
	sum := sha256.Sum256(want)
	seeded := seededMarker{Objects: len(man.Objects), Manifest: hex.EncodeToString(sum[:])}
	var got seededMarker
	b, err := os.ReadFile(marker)
	ok := err == nil && json.Unmarshal(b, &got) == nil && got == seeded
	if !ok {
		_ = os.Remove(marker)
		if err := os.RemoveAll(root); err != nil {
			return nil, err
		}
	}
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		StorageRoot: root, NoListener: true, PublicHost: "127.0.0.1", Scheme: "http", Writer: io.Discard,
	})
	if err != nil {
		return nil, fmt.Errorf("start fake GCS: %w", err)
	}
	if ok {
		return srv, nil
	}
	log.Info("filling the fake Cloud Storage bucket (once)", "bucket", man.Bucket, "objects", len(man.Objects))
	for _, o := range man.Objects {
		f, err := os.Open(man.Path(o))
		if err != nil {
			srv.Stop()
			return nil, err
		}
		err = srv.CreateObjectStreaming(fakestorage.StreamingObject{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: man.Bucket, Name: o.Key, ContentType: "application/dicom"},
			Content:     f,
		})
		f.Close()
		if err != nil {
			srv.Stop()
			return nil, fmt.Errorf("put %s into fake GCS: %w", o.Key, err)
		}
	}
	if err := writeJSON(marker, seeded); err != nil {
		srv.Stop()
		return nil, err
	}
	return srv, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(b, '\n'))
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }
