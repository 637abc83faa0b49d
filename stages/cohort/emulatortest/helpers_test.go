package emulatortest

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/idcfake"
	"connectome/internal/tables"
	"connectome/pipeline"
	"connectome/stages/cohort"
)

const project = "bigquery-public-data"

// outputs are the stage's tables and the run's failures.
type outputs struct {
	lesions   []tables.Lesion
	instances []tables.Instance
	clinical  []tables.Clinical
	failures  []pipeline.Failure
	runErr    error
	dir       string
}

// startEmulator loads the fixtures (each in its own release's datasets) into a fresh
// in-process emulator.
func startEmulator(t *testing.T, fs ...*idcfake.Fixture) *idcfake.Emulator {
	t.Helper()
	emu, err := idcfake.Start(project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	for _, f := range fs {
		tbls, err := f.Tables()
		if err != nil {
			t.Fatal(err)
		}
		if err := emu.Load(context.Background(), tbls); err != nil {
			t.Fatal(err)
		}
	}
	return emu
}

// runCohort runs the cohort stage through the engine against the emulator.
func runCohort(t *testing.T, emu *idcfake.Emulator, s cohort.Settings) outputs {
	t.Helper()
	ctx := context.Background()
	s.BillingProject = project
	q, err := cohort.NewBigQuery(ctx, s.BillingProject, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	runDir := t.TempDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	r, err := pipeline.NewRunner([]pipeline.Stage{cohort.New(s, q)}, pipeline.Options{RunDir: runDir, Only: "cohort", Log: log, PipelineVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var out outputs
	_, out.runErr = r.Run(ctx)
	out.dir = filepath.Join(runDir, "cohort")
	if out.runErr != nil {
		return out
	}
	if out.lesions, _, err = tables.ReadLesions(filepath.Join(out.dir, "lesions.arrow")); err != nil {
		t.Fatal(err)
	}
	if out.instances, _, err = tables.ReadInstances(filepath.Join(out.dir, "instances.arrow")); err != nil {
		t.Fatal(err)
	}
	if out.clinical, _, err = tables.ReadClinical(filepath.Join(out.dir, "clinical.arrow")); err != nil {
		t.Fatal(err)
	}
	if fs, err := pipeline.ReadFailures(filepath.Join(runDir, "failures.arrow")); err == nil {
		out.failures = fs
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func near3(a, b [3]float64) bool { return near(a[0], b[0]) && near(a[1], b[1]) && near(a[2], b[2]) }

func lesionsOf(ls []tables.Lesion, patient string) []tables.Lesion {
	var out []tables.Lesion
	for _, l := range ls {
		if l.PatientID == patient {
			out = append(out, l)
		}
	}
	return out
}

// tableMeta returns a key of lesions.arrow's schema metadata ("" when absent).
func tableMeta(t *testing.T, out outputs, key string) string {
	t.Helper()
	_, md, err := tables.ReadLesions(filepath.Join(out.dir, "lesions.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
}
