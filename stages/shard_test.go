package stages_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/encoders"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/models/onnxrt/onnxrttest"
	"connectome/pipeline"
	"connectome/stages"
	"connectome/stages/cohort"
	"connectome/stages/fetch"
)

var ortEnv *onnxrttest.Env

// TestMain opens the process's ONNX Runtime once: the pipelines the tests assemble (several
// at once, one per simulated shard process) share its environment and never tear it down.
func TestMain(m *testing.M) {
	onnxrttest.UseRepoLibrary()
	ortEnv = onnxrttest.Open()
	code := m.Run()
	ortEnv.Close()
	os.Exit(code)
}

// shardFixture is a cohort file over a local DICOM folder (dicomsynth), small generated
// encoders, and the config of a run over them.
type shardFixture struct {
	cfg     stages.Config
	lesions int
}

func newShardFixture(t *testing.T) *shardFixture {
	t.Helper()
	tmp := t.TempDir()
	dcm := filepath.Join(tmp, "dicom")
	var csv strings.Builder
	csv.WriteString("patient_id,series_instance_uid,center_x_mm,center_y_mm,center_z_mm\n")
	n := 0
	for p := range 7 {
		pid := fmt.Sprintf("P%02d", p)
		uid := fmt.Sprintf("1.2.826.0.1.3680043.9.%d", 100+p)
		// A blob of its own size and brightness per patient, so that the encoders see
		// different tumours.
		cx, cy, r := 16.0+float64(p%3), 15.0, 3.0+float64(p%4)
		ser := dicomsynth.Series{Rows: 32, Columns: 32, Slices: 12, PixelSpacing: [2]float64{1, 1}, SliceSpacing: 2,
			Origin: [3]float64{-16, -16, -10}, Signed: true, PatientID: pid, SeriesUID: uid, StudyUID: uid + ".1",
			HU: func(i, j, k int) float64 {
				d := math.Hypot(float64(i)-cx, float64(j)-cy)
				if d < r && k > 3 && k < 9 {
					return 20 + 15*float64(p) - 4*d
				}
				return -800 + 10*float64((i*7+j*3+k+p)%11)
			}}
		if _, err := ser.Write(filepath.Join(dcm, pid)); err != nil {
			t.Fatal(err)
		}
		for l := range 1 + p%2 { // every other patient has two lesions
			fmt.Fprintf(&csv, "%s,%s,%g,%g,%g\n", pid, uid, cx-16+float64(2*l), cy-16-float64(l), 0.0+2*float64(l))
			n++
		}
	}
	lf := filepath.Join(tmp, "lesions.csv")
	if err := os.WriteFile(lf, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(tmp, "models.yaml")
	if err := os.WriteFile(mf, []byte(onnxrttest.TestModelsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := models.Load(mf)
	if err != nil {
		t.Fatal(err)
	}
	modelsDir := filepath.Join(tmp, "models")
	if _, err := encoders.WriteDemoModels(modelsDir, reg); err != nil {
		t.Fatal(err)
	}
	cfg := stages.DefaultConfig()
	cfg.RunDir, cfg.ModelsFile, cfg.Workers = filepath.Join(tmp, "run"), mf, 2
	cfg.Cohort.Source, cfg.Cohort.Policy, cfg.Cohort.File, cfg.Cohort.DICOMDir = cohort.SourceFile, cohort.PolicyAllLesions, lf, dcm
	cfg.Fetch.Source = fetch.SourceLocal
	cfg.Embed.ModelsDir, cfg.Embed.Device, cfg.Embed.Threads = modelsDir, "cpu", 1
	cfg.Similarity.K = 3
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &shardFixture{cfg: cfg, lesions: n}
}

// run runs one process of the pipeline over runDir: a full Runner over freshly assembled
// stages, as `connectome run` does.
func (f *shardFixture) run(ctx context.Context, t *testing.T, runDir string, sh pipeline.Shard, only string, resume bool) (*pipeline.Summary, error) {
	cfg := f.cfg
	cfg.RunDir = runDir
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("shard", sh.String())
	}
	return runChain(ctx, cfg, pipeline.Options{Only: only, Resume: resume, Log: log, Shard: sh})
}

// preprocessing waits until shard sh has preprocessed a lesion in runDir (its first record
// is there) and reports whether it has; false when ctx ends first.
func preprocessing(ctx context.Context, runDir string, sh pipeline.Shard) bool {
	records := filepath.Join(pipeline.ShardDir(runDir, layout.Preprocess, sh), "records")
	for ctx.Err() == nil {
		if ents, _ := os.ReadDir(records); len(ents) > 0 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// runChain assembles the stages of cfg and runs them with opt (RunDir, Workers and the version
// come from cfg). Several chains run at once in one test process, sharing its ONNX Runtime.
func runChain(ctx context.Context, cfg stages.Config, opt pipeline.Options) (*pipeline.Summary, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	chain, err := stages.Build(ctx, cfg, "test", stages.Endpoints{}, opt.Log)
	if err != nil {
		return nil, err
	}
	defer chain.Close()
	r, err := chain.NewRunner(opt)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx)
}

// TestShardedRunEqualsSingleProcess simulates a sharded run on one machine: the plan step,
// three shard processes at once against one run directory (one of them interrupted halfway
// and resumed), then the merge; and then similarity sharded by query rows with its merge. The
// merged tables must equal those of a single-process run: the same embeddings, the same edges
// in the same order, the same agreement.
func TestShardedRunEqualsSingleProcess(t *testing.T) {
	ortEnv.Require(t)
	f := newShardFixture(t)
	ctx := context.Background()
	tmp := t.TempDir()

	single := filepath.Join(tmp, "single")
	if sum, err := f.run(ctx, t, single, pipeline.Shard{}, "", false); err != nil || sum.Failures != 0 {
		t.Fatalf("single-process run: %v (failures %v)", err, sum)
	}

	const n = 3
	all := pipeline.AllShards(n)
	sharded := filepath.Join(tmp, "sharded")
	// A shard before the plan step halts and says what to do.
	if _, err := f.run(ctx, t, sharded, pipeline.Shard{Index: 0, Count: n}, "", false); err == nil || !strings.Contains(err.Error(), "--only cohort") {
		t.Fatalf("shard before the plan step: %v, want a halt naming --only cohort", err)
	}
	if _, err := f.run(ctx, t, sharded, all, "cohort", false); err != nil {
		t.Fatalf("plan step: %v", err)
	}
	// The merge before the shards halts naming the missing shards.
	if _, err := f.run(ctx, t, sharded, all, "", false); err == nil || !strings.Contains(err.Error(), "shards 0, 1, 2 of 3 have not completed") {
		t.Fatalf("merge before the shards: %v", err)
	}

	// Shards 0 and 2 run to the end while shard 1 is stopped once it has preprocessed a lesion.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			sh := pipeline.Shard{Index: i, Count: n}
			sctx := ctx
			if i == 1 {
				var cancel context.CancelFunc
				sctx, cancel = context.WithCancel(ctx)
				defer cancel()
				go func() {
					if preprocessing(sctx, sharded, sh) {
						cancel()
					}
				}()
			}
			_, errs[i] = f.run(sctx, t, sharded, sh, "", false)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 1 {
			if !errors.Is(err, pipeline.ErrInterrupted) {
				t.Fatalf("shard 1: %v, want interrupted", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	if _, ok, _ := pipeline.ReadMarker(sharded, layout.Embed, pipeline.Shard{Index: 1, Count: n}); ok {
		t.Fatal("interrupted shard 1 has an embed marker")
	}
	if _, err := f.run(ctx, t, sharded, all, "", false); err == nil || !strings.Contains(err.Error(), "shards 1 of 3") {
		t.Fatalf("merge without shard 1: %v, want a halt naming shard 1", err)
	}
	if _, err := f.run(ctx, t, sharded, pipeline.Shard{Index: 1, Count: n}, "", true); err != nil {
		t.Fatalf("shard 1 resumed: %v", err)
	}
	m, ok, err := pipeline.ReadMarker(sharded, layout.Preprocess, pipeline.Shard{Index: 1, Count: n})
	if err != nil || !ok || m.Counts["skipped"] < 1 || m.Shard != "1/3" {
		t.Fatalf("resumed shard 1's preprocess marker %+v (%v, %v): want the lesion done before the stop skipped, shard 1/3", m, ok, err)
	}

	// Every lesion is in exactly one shard's part.
	owners := map[string]int{}
	for _, sh := range all.Each() {
		rows, _, err := tables.ReadEmbeddings(memory.DefaultAllocator, layout.New(sharded, sh).Embeddings("test-conv-a"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			t.Errorf("shard %d embedded nothing", sh.Index)
		}
		for _, r := range rows {
			if o, dup := owners[r.LesionID]; dup {
				t.Errorf("lesion %s in shards %d and %d", r.LesionID, o, sh.Index)
			}
			owners[r.LesionID] = sh.Index
		}
	}
	if len(owners) != f.lesions {
		t.Errorf("%d lesions in the parts, want %d", len(owners), f.lesions)
	}

	// The merge: similarity over all parts, then report.
	if sum, err := f.run(ctx, t, sharded, all, "", false); err != nil || sum.Failures != 0 {
		t.Fatalf("merge: %v (%+v)", err, sum)
	}
	compareRuns(t, single, sharded)
	if _, err := os.Stat(layout.New(sharded, pipeline.Shard{}).Page()); err != nil {
		t.Errorf("merge wrote no report: %v", err)
	}

	// Similarity sharded by query rows, then the merge gathers the edge parts.
	for _, sh := range all.Each() {
		if _, err := f.run(ctx, t, sharded, sh, "similarity", false); err != nil {
			t.Fatalf("similarity of shard %d: %v", sh.Index, err)
		}
	}
	if _, err := f.run(ctx, t, sharded, all, "", false); err != nil {
		t.Fatalf("merge of edge parts: %v", err)
	}
	m, _, _ = pipeline.ReadMarker(sharded, layout.Similarity, pipeline.Shard{})
	if m.Counts["merged_parts"] != n {
		t.Errorf("similarity marker counts %v: the merge did not gather the %d edge parts", m.Counts, n)
	}
	compareRuns(t, single, sharded)

	// A part from another config is never mixed in: the merge halts naming it.
	part := layout.New(sharded, pipeline.Shard{Index: 2, Count: n}).Embeddings("test-conv-b")
	rows, md, err := tables.ReadEmbeddings(memory.DefaultAllocator, part)
	if err != nil {
		t.Fatal(err)
	}
	keys, vals := slices.Clone(md.Keys()), slices.Clone(md.Values())
	for i, k := range keys {
		if k == "connectome.config_hash" {
			vals[i] = "0123456789abcdef"
		}
	}
	if err := tables.WriteEmbeddings(memory.DefaultAllocator, part, rows, 7, arrowMetadata(keys, vals)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(ctx, t, sharded, all, "", false); err == nil || !strings.Contains(err.Error(), "shard-2-of-3/test-conv-b.arrow has config 0123456789ab") {
		t.Fatalf("merge with a part of another config: %v", err)
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(ctx, t, sharded, all, "", false); err == nil || !strings.Contains(err.Error(), "shard-2-of-3/test-conv-b.arrow is missing") {
		t.Fatalf("merge with a part missing: %v", err)
	}
}

// compareRuns checks that the sharded run's merged tables equal the single-process run's.
func compareRuns(t *testing.T, single, sharded string) {
	t.Helper()
	for _, model := range []string{"test-conv-a", "test-conv-b"} {
		want, _, err := tables.ReadEmbeddings(memory.DefaultAllocator, layout.New(single, pipeline.Shard{}).Embeddings(model))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]float32{}
		for _, sh := range pipeline.AllShards(3).Each() {
			rows, _, err := tables.ReadEmbeddings(memory.DefaultAllocator, layout.New(sharded, sh).Embeddings(model))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got[r.LesionID] = r.Vector
			}
		}
		if len(got) != len(want) {
			t.Errorf("model %s: %d embeddings in the parts, %d in the single run", model, len(got), len(want))
		}
		for _, r := range want {
			if !slices.Equal(got[r.LesionID], r.Vector) {
				t.Errorf("model %s lesion %s: embedding differs", model, r.LesionID)
			}
		}
	}
	we, _, err := tables.ReadEdges(layout.New(single, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	ge, _, err := tables.ReadEdges(layout.New(sharded, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	if len(we) == 0 || !slices.Equal(we, ge) {
		t.Errorf("edges differ: single run %d rows, sharded %d", len(we), len(ge))
		for i := range min(len(we), len(ge)) {
			if we[i] != ge[i] {
				t.Errorf("first difference at row %d: %+v vs %+v", i, we[i], ge[i])
				break
			}
		}
	}
	wa, _, err := tables.ReadAgreement(layout.New(single, pipeline.Shard{}).Agreement())
	if err != nil {
		t.Fatal(err)
	}
	ga, _, err := tables.ReadAgreement(layout.New(sharded, pipeline.Shard{}).Agreement())
	if err != nil {
		t.Fatal(err)
	}
	if len(wa) != 1 || !slices.Equal(wa, ga) {
		t.Errorf("agreement: single %+v, sharded %+v", wa, ga)
	}
}

func arrowMetadata(keys, vals []string) arrow.Metadata { return arrow.NewMetadata(keys, vals) }
