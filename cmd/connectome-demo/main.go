// Command connectome-demo runs the whole pipeline offline on a synthetic NLST-like cohort
// (package demo/demorun): generated CT and NLST-Sybil-style SRs as real DICOM, served from an
// in-process BigQuery emulator and fake Cloud Storage, run through the production stages on
// CPU with generated encoders. It is its own binary so that the emulators, which add hundreds
// of MB and minutes of build, stay out of cmd/connectome.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectome/stages"

	"connectome/internal/console"
	"connectome/internal/demo"
	"connectome/internal/demo/demorun"
	"connectome/pipeline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := demorun.Options{Version: stages.PipelineVersion, Command: append([]string{"connectome-demo"}, args...)}
	var logLevel, progress string
	fs := flag.NewFlagSet("connectome-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Config, "config", "configs/demo.yaml", "pipeline config `FILE`")
	fs.StringVar(&o.RunDir, "run-dir", "", "run `DIR` (default: the config's run_dir, runs/demo); gs://BUCKET/PREFIX keeps it in Cloud Storage (STORAGE_EMULATOR_HOST for an emulator)")
	fs.StringVar(&o.WorkDir, "work-dir", "", "local working copy `DIR` of a gs:// run dir (default: under the user cache dir)")
	fs.StringVar(&o.ModelsDir, "models-dir", "", "`DIR` the demo encoders are written to (default: the config's embed.models_dir)")
	fs.StringVar(&o.CohortDir, "cohort-dir", "runs/demo-cohort", "`DIR` caching generated cohorts (one folder per seed and size)")
	fs.IntVar(&o.Patients, "patients", demo.DefaultPatients, "number of synthetic patients `N`")
	fs.Int64Var(&o.Seed, "seed", demo.DefaultSeed, "generator `SEED`: the same seed and size give the same bytes")
	fs.BoolVar(&o.Resume, "resume", true, "keep what an earlier run of the same cohort and config finished (--resume=false starts over)")
	fs.IntVar(&o.Workers, "workers", 0, "worker count `N` (0: the config's, else the number of CPUs)")
	fs.StringVar(&logLevel, "log-level", "info", "log level `debug|info|warn|error`")
	fs.StringVar(&progress, "progress", "auto", "progress display `auto|bars|log|none` (auto: bars on a terminal, else a log line every few seconds)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: connectome-demo [flags]

Generates a synthetic NLST-like cohort (cached), serves it from in-process BigQuery and Cloud
Storage emulators and runs the real pipeline on it on CPU, writing <run-dir>/report/index.html.
Run it again and it resumes: a finished demo returns in seconds.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "connectome-demo: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Patients < 1 {
		fmt.Fprintln(stderr, "connectome-demo: --patients must be at least 1")
		return 2
	}
	log, p, err := console.New(stderr, "text", logLevel, progress)
	if err != nil {
		fmt.Fprintln(stderr, "connectome-demo:", err)
		return 2
	}
	o.Log, o.Progress = log, p
	res, err := demorun.Run(ctx, o)
	p.Close()
	switch {
	case errors.Is(err, pipeline.ErrInterrupted):
		log.Warn("stopped; run the demo again to continue")
		return 1
	case err != nil:
		log.Error("demo halted", "err", err)
		if res != nil && res.Code != 0 {
			return res.Code
		}
		return 1
	}
	printResult(stdout, res)
	return res.Code
}

func printResult(w io.Writer, res *demorun.Result) {
	fmt.Fprintf(w, "\nDemo finished in %s (%d synthetic patients, seed %d).\n",
		res.Elapsed.Round(time.Second), res.Cohort.Patients, res.Cohort.Seed)
	if len(res.Agreement) > 0 {
		fmt.Fprintln(w, "How often a tumour's closest matches share the kind it was generated as (solid, part-solid, ground-glass):")
		for _, a := range res.Agreement {
			fmt.Fprintf(w, "  %-14s %3.0f%%   (chance %2.0f%%, %d tumours)\n", a.Model, 100*a.Same, 100*a.Chance, a.Queries)
		}
	}
	if res.Summary != nil && res.Summary.Failures > 0 {
		fmt.Fprintf(w, "%d items failed: see %s/failures.arrow\n", res.Summary.Failures, res.RunDir)
	}
	fmt.Fprintf(w, "\nOpen the connectome: file://%s\n", res.Report)
}
