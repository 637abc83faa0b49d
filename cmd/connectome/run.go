package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"connectome/internal/console"
	"connectome/internal/gcp"
	"connectome/internal/layout"
	"connectome/models/onnxrt"
	"connectome/pipeline"
	"connectome/stages"
	"connectome/stages/report"
)

// stringList is a repeatable flag that also splits on commas.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

type runFlags struct {
	config, runDir, from, to, only      string
	resume, retryFailed                 bool
	device                              string
	workers                             int
	embeddings                          stringList
	clinical                            string
	logFormat, logLevel, progress       string
	cacheDir, billingProject, modelsDir string
	maxBytesBilled                      int64
	shard                               string
	shards                              int
	workDir                             string
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f runFlags
	fs := flag.NewFlagSet("connectome run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "pipeline config `FILE` (YAML; unknown keys are errors; relative paths in it are relative to it). Default: the built-in defaults, which configs/nlst-sybil.yaml lists")
	fs.StringVar(&f.runDir, "run-dir", "", "run `DIR` for every output (overrides run_dir in the config); gs://BUCKET/PREFIX keeps it in Cloud Storage, through a local working copy (--work-dir)")
	fs.StringVar(&f.workDir, "work-dir", "", "local working copy `DIR` of a gs:// run dir (default: a directory named for the URL, and the shard, under the user cache dir: ~/.cache/connectome/runs/)")
	fs.StringVar(&f.from, "from", "", "first `STAGE` to run; earlier stages must be complete in the run dir")
	fs.StringVar(&f.to, "to", "", "last `STAGE` to run")
	fs.StringVar(&f.only, "only", "", "run just this `STAGE`")
	fs.BoolVar(&f.resume, "resume", false, "keep complete stages and items of an earlier run with the same config; a stage whose config changed re-runs with every stage after it")
	fs.BoolVar(&f.retryFailed, "retry-failed", false, "with --resume, also re-run complete stages that recorded item failures, retrying just those items")
	fs.StringVar(&f.device, "device", "", "inference device `cpu|cuda|auto` (overrides embed.device; auto falls back to CPU and says so)")
	fs.IntVar(&f.workers, "workers", 0, "worker count `N` per stage (0: the config's, else the number of CPUs)")
	fs.Var(&f.embeddings, "embeddings", "Arrow IPC or Parquet `FILE`s of embeddings for similarity (repeat, or comma-separate; with --only similarity no other stage is needed)")
	fs.StringVar(&f.clinical, "clinical", "", "clinical data `FILE` (CSV, Parquet or Arrow) for the report, instead of the cohort's (overrides report.clinical_file): colours a run from --embeddings by cancer type, stage, sex, age, race, smoking. Columns: see Clinical file below")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format `text|json` (logs go to stderr)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level `debug|info|warn|error`")
	fs.StringVar(&f.progress, "progress", "auto", "progress display `auto|bars|log|none` (auto: bars on a terminal, else a log line per stage every few seconds)")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "DICOM cache `DIR` shared across runs (overrides fetch.cache_dir)")
	fs.StringVar(&f.billingProject, "billing-project", "", "Google Cloud `PROJECT` billed for BigQuery (else cohort.billing_project, else $GOOGLE_CLOUD_PROJECT)")
	fs.Int64Var(&f.maxBytesBilled, "max-bytes-billed", 0, "halt before a BigQuery query that would scan more than `BYTES` (default from the config: 50 GB)")
	fs.StringVar(&f.modelsDir, "models-dir", "", "`DIR` holding the ONNX model files (overrides embed.models_dir)")
	fs.StringVar(&f.shard, "shard", "", "run shard `i/N` of a sharded run: fetch, preprocess and embed of the shard's lesions (default from BATCH_TASK_INDEX/BATCH_TASK_COUNT, or JOB_COMPLETION_INDEX with the config's shards); see docs/sharding.md")
	fs.IntVar(&f.shards, "shards", 0, "split the run in `N` shards (overrides shards in the config): without --shard this process is the plan step (--only cohort) or the merge (default: --from similarity)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: connectome run --config FILE [flags]

Runs the pipeline stages cohort → fetch → preprocess → embed → similarity → report over one
run directory. Every stage writes its outputs atomically and a _SUCCESS.json marker last;
item failures go to failures.arrow and the run goes on. Stop with Ctrl-C at any time and
continue with --resume.

Examples:
  connectome run --config configs/nlst-sybil.yaml --device cuda
  connectome run --config configs/nlst-sybil.yaml --resume
  connectome run --config configs/nlst-sybil.yaml --from embed --device cuda
  connectome run --only similarity --embeddings emb.parquet --run-dir runs/mine
  connectome run --from similarity --embeddings emb.arrow --run-dir runs/mine   (similarity + report)
  connectome run --from similarity --embeddings emb.arrow --clinical clinical.csv --run-dir runs/mine

Sharded (docs/sharding.md): plan once, run N shards anywhere at once, then merge:
  connectome run --config c.yaml --shards 8 --only cohort
  connectome run --config c.yaml --shards 8 --shard 3/8 --device cuda     (each of 0/8 … 7/8)
  connectome run --config c.yaml --shards 8                               (similarity + report)
Any of them with --run-dir gs://BUCKET/PREFIX keeps the run directory in Cloud Storage: each
process works on a local copy (--work-dir) and uploads a stage's files, then its marker, last.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nClinical file (--clinical, or report.clinical_file in the config):\n", report.ClinicalColumns, "\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// "--embeddings A B C --run-dir D": the files after --embeddings, up to the next flag,
	// are more embeddings files; the flag package stops at the first of them.
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		if strings.HasPrefix(rest[0], "-") && rest[0] != "-" {
			if err := fs.Parse(rest); err != nil {
				return 2
			}
			continue
		}
		if len(f.embeddings) == 0 {
			fmt.Fprintf(stderr, "connectome run: unexpected argument %q\n", rest[0])
			return 2
		}
		f.embeddings = append(f.embeddings, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return 2
		}
	}

	for _, st := range []struct{ flag, name string }{{"from", f.from}, {"to", f.to}, {"only", f.only}} {
		if st.name != "" && !slices.Contains(stages.Names(), st.name) {
			fmt.Fprintf(stderr, "connectome run: --%s %q: unknown stage (stages: %s)\n", st.flag, st.name, strings.Join(stages.Names(), ", "))
			return 2
		}
	}
	if msg := checkRunFlags(f); msg != "" {
		fmt.Fprintln(stderr, "connectome run:", msg)
		return 2
	}
	log, closeLog, err := newLogger(stderr, f.logFormat, f.logLevel, f.progress)
	if err != nil {
		fmt.Fprintln(stderr, "connectome run:", err)
		return 2
	}
	code := run(ctx, f, args, log)
	closeLog()
	return code
}

// checkRunFlags says what is wrong with a combination of flags ("" if nothing): values the
// config would silently ignore, and --embeddings with stages that compute embeddings.
func checkRunFlags(f runFlags) string {
	switch {
	case f.workers < 0:
		return fmt.Sprintf("--workers %d: want 0 (the config's, else one per CPU) or more", f.workers)
	case f.maxBytesBilled < 0:
		return fmt.Sprintf("--max-bytes-billed %d: want a positive byte count (0: the config's)", f.maxBytesBilled)
	case f.shards < 0:
		return fmt.Sprintf("--shards %d: want 1 or more (0: the config's)", f.shards)
	}
	if len(f.embeddings) == 0 || f.shards > 0 {
		return ""
	}
	first := f.from
	if f.only != "" {
		first = f.only
	}
	if i := slices.Index(stages.Names(), first); i < 0 || i < slices.Index(stages.Names(), "similarity") {
		// the embed stage's output and the files would both feed similarity, silently mixed
		return "--embeddings feeds similarity with embeddings made elsewhere: use it with --from similarity or --only similarity, not with a run that computes embeddings"
	}
	return ""
}

func run(ctx context.Context, f runFlags, args []string, lg *logger) int {
	cfg, err := stages.LoadConfig(f.config, configOverrides(f))
	if err != nil {
		lg.Error("bad config", "err", err)
		return 1
	}
	shard, shardFrom, err := resolveShard(f.shard, cfg.Shards, os.Getenv)
	if err != nil {
		lg.Error("bad shard", "err", err)
		return pipeline.ExitCode(nil, err)
	}
	if shard.Sharded() {
		lg.Info("sharded run", "shard", shard.String(), "from", shardFrom)
	}
	// A run dir in Cloud Storage: the stages work on a local copy, synced at stage boundaries.
	manifestCfg, runDirName := cfg, cfg.RunDir
	var remote pipeline.Remote
	if gcp.IsURL(cfg.RunDir) {
		d, closeRemote, err := openRemote(ctx, cfg, f.workDir, shard)
		if err != nil {
			lg.Error("cannot open run directory", "err", err)
			return pipeline.ExitCode(nil, err)
		}
		defer closeRemote()
		d.Log = lg.Logger
		lg.Info("run directory in Cloud Storage", "run_dir", d.URL.String(), "work_dir", d.Local)
		remote, cfg.RunDir = d, d.Local
	}
	chain, err := stages.Build(ctx, cfg, stages.PipelineVersion, stages.Endpoints{}, lg.Logger)
	if err != nil {
		lg.Error("cannot start", "err", err)
		return 1
	}
	defer chain.Close()
	r, err := chain.NewRunner(pipeline.Options{
		From: f.from, To: f.to, Only: f.only, Resume: f.resume, RetryFailed: f.retryFailed,
		Log: lg.Logger, Progress: lg.progress,
		Command: append([]string{"connectome", "run"}, args...), Config: manifestCfg,
		Versions: map[string]string{"pipeline": stages.VersionString(), "idc": cfg.Cohort.IDCRelease, "onnxruntime": onnxrt.ORTVersion},
		Shard:    shard,
		Remote:   remote,
	})
	if err != nil {
		lg.Error("cannot run", "err", err)
		return pipeline.ExitCode(nil, err)
	}
	sum, err := r.Run(ctx)
	code := pipeline.ExitCode(sum, err)
	switch {
	case errors.Is(err, pipeline.ErrInterrupted):
		lg.Warn("stopped; continue with --resume", "run_dir", runDirName)
	case err != nil:
		lg.Error("run halted", "err", err)
	case code == 3:
		lg.Warn("run finished with item failures", "failures", sum.Failures, "table", runDirName+"/"+pipeline.FailuresName(shard))
	default:
		lg.Info("run finished", "run_dir", runDirName)
	}
	return code
}

// openRemote opens a gs:// run dir with its working copy. The DICOM cache stays local when
// it is the default <run>/dicom: large, per machine, and re-fetchable.
//
// The default working copy is per shard: shards run at once on one machine then never scan
// (and upload) each other's unfinished files.
func openRemote(ctx context.Context, cfg stages.Config, workDir string, sh pipeline.Shard) (*gcp.Dir, func() error, error) {
	u, err := gcp.ParseURL(cfg.RunDir)
	if err != nil {
		return nil, nil, &pipeline.UsageError{Msg: "--run-dir: " + err.Error()}
	}
	if workDir == "" {
		if workDir, err = gcp.WorkDir(u); err != nil {
			return nil, nil, err
		}
		if sh.IsPart() {
			workDir = filepath.Join(workDir, sh.Name())
		}
	}
	d, closeFn, err := gcp.Open(ctx, u, workDir, gcp.ClientOptions{})
	if err != nil {
		return nil, nil, pipeline.Halt(err)
	}
	if cfg.Fetch.CacheDir == "" {
		d.Exclude = []string{layout.DICOMDir}
	}
	return d, closeFn, nil
}

func configOverrides(f runFlags) stages.Overrides {
	return stages.Overrides{RunDir: f.runDir, Device: f.device, Workers: f.workers, Embeddings: f.embeddings,
		CacheDir: f.cacheDir, BillingProject: f.billingProject, MaxBytesBilled: f.maxBytesBilled, ModelsDir: f.modelsDir,
		Shards: f.shards, Clinical: f.clinical}
}

// logger is the run's slog logger and the progress display it shares the terminal with.
type logger struct {
	*slog.Logger
	progress *console.Progress
}

func newLogger(w io.Writer, format, level, progress string) (*logger, func(), error) {
	l, p, err := console.New(w, format, level, progress)
	if err != nil {
		return nil, nil, err
	}
	return &logger{Logger: l, progress: p}, p.Close, nil
}
