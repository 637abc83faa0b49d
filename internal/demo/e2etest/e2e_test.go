// Package e2etest runs the offline demo end to end in-process (generator, BigQuery emulator,
// fake Cloud Storage, the six production stages on CPU) on a small cohort and checks every
// table, the report in a headless browser, and a resumed second run. It is its own package
// because it links the BigQuery emulator (a ~270 MB test binary).
package e2etest

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"connectome/internal/arrowfile"
	"connectome/internal/layout"
	"connectome/internal/testenv"

	"connectome/internal/demo"
	"connectome/internal/demo/demorun"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/models/onnxrt/onnxrttest"
	"connectome/pipeline"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// patients is the CI demo's size; CONNECTOME_DEMO_PATIENTS overrides it (60 = `make demo`).
func patients(t *testing.T) int {
	n := 12
	if v := os.Getenv("CONNECTOME_DEMO_PATIENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			t.Fatalf("CONNECTOME_DEMO_PATIENTS=%q: want an integer ≥ 3", v)
		}
	}
	return n
}

func TestMain(m *testing.M) {
	onnxrttest.UseRepoLibrary()
	os.Exit(m.Run())
}

func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end demo takes about a minute (-short)")
	}
	// ONNX Runtime is a hard requirement of the embed stage: fail under CI, skip elsewhere.
	env := onnxrttest.Open()
	env.Require(t)
	env.Close()

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(root) // the config names repository paths (configs/demo-models.yaml, the graph library)
	tmp := t.TempDir()
	n := patients(t)
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	opts := demorun.Options{
		Config: "configs/demo.yaml", RunDir: filepath.Join(tmp, "run"), CohortDir: filepath.Join(tmp, "cohorts"),
		ModelsDir: filepath.Join(tmp, "models"), Patients: n, Seed: demo.DefaultSeed, Resume: true,
		Version: "0.1.0-e2e", Command: []string{"e2etest"},
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	ctx := context.Background()
	t0 := time.Now()
	res, err := demorun.Run(ctx, opts)
	if err != nil {
		t.Fatalf("demo run: %v", err)
	}
	t.Logf("first run: %v", time.Since(t0).Round(time.Millisecond))
	if res.Code != 0 || !res.Services {
		t.Errorf("exit code %d, services started %v; want 0 and true", res.Code, res.Services)
	}
	run := res.RunDir
	reg, err := models.Load("configs/demo-models.yaml")
	if err != nil {
		t.Fatal(err)
	}
	truth, err := res.Cohort.Truth()
	if err != nil {
		t.Fatal(err)
	}
	var ctObjects int
	for _, o := range res.Cohort.Objects {
		if o.Modality == "CT" {
			ctObjects++
		}
	}
	k := 5
	nModels := len(reg.Models)

	// failures.arrow: present and empty.
	fails, err := pipeline.ReadFailures(filepath.Join(run, "failures.arrow"))
	if err != nil {
		t.Fatalf("failures.arrow: %v", err)
	}
	if len(fails) != 0 || res.Summary.Failures != 0 {
		t.Errorf("%d failures: %+v", len(fails), fails)
	}
	for _, st := range layout.Stages() {
		if _, ok, err := pipeline.ReadMarker(run, st, pipeline.Shard{}); err != nil || !ok {
			t.Errorf("stage %s has no completion marker (%v)", st, err)
		}
	}

	// cohort: one lesion per generated tumour (policy all-lesions), each where its tumour is.
	lesions, md, err := tables.ReadLesions(layout.New(run, pipeline.Shard{}).Lesions())
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, "cohort/lesions.arrow", md, opts.Version)
	if len(lesions) != len(truth) {
		t.Errorf("lesions.arrow: %d rows, the generator drew %d tumours", len(lesions), len(truth))
	}
	match, err := demo.MatchLesions(lesions, truth, 6)
	if err != nil {
		t.Error(err)
	}
	seen := map[*demo.Tumour]bool{}
	for _, l := range lesions {
		tu := match[l.LesionID]
		if tu == nil {
			continue
		}
		if seen[tu] {
			t.Errorf("two lesions for the tumour of %s at %v", tu.PatientID, tu.CentreLPS)
		}
		seen[tu] = true
		if int(l.NBoxes) != len(tu.Boxes) {
			t.Errorf("lesion %s groups %d boxes, its tumour has %d", l.LesionID, l.NBoxes, len(tu.Boxes))
		}
	}
	checkTruthTable(t, run, lesions, match)
	inst, md, err := tables.ReadInstances(layout.New(run, pipeline.Shard{}).Instances())
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, "cohort/instances.arrow", md, opts.Version)
	if len(inst) != ctObjects {
		t.Errorf("instances.arrow: %d rows, want every CT instance of the annotated series (%d)", len(inst), ctObjects)
	}
	clin, md, err := tables.ReadClinical(layout.New(run, pipeline.Shard{}).Clinical())
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, "cohort/clinical.arrow", md, opts.Version)
	if len(clin) != n {
		t.Errorf("clinical.arrow: %d rows, want %d", len(clin), n)
	}
	for _, c := range clin {
		if c.Age < 55 || c.Age > 74 || c.Sex == "" || c.Stage == "" || c.CancerType == "" {
			t.Errorf("clinical row %+v: want age 55–74 and labelled sex, stage and cancer type", c)
		}
	}

	// preprocess: one patch per lesion and model, nothing padded (tumours sit inside the scan).
	patches, md, err := tables.ReadPatches(layout.New(run, pipeline.Shard{}).Patches())
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, "preprocess/patches.arrow", md, opts.Version)
	if len(patches) != len(lesions)*nModels {
		t.Errorf("patches.arrow: %d rows, want %d", len(patches), len(lesions)*nModels)
	}
	for _, p := range patches {
		if p.FracPadded > 0 || p.SeedInAir {
			t.Errorf("patch %s/%s: padded %.3f, seed in air %v", p.LesionID, p.Model, p.FracPadded, p.SeedInAir)
		}
	}
	qc := 0
	for _, l := range lesions {
		if _, err := os.Stat(layout.New(run, pipeline.Shard{}).QCPreview(l.LesionID)); err == nil {
			qc++
		}
	}
	if qc != len(lesions) {
		t.Errorf("QC previews: %d, want one per lesion (%d)", qc, len(lesions))
	}

	// embed: one table per model, one unit vector per lesion.
	for _, m := range reg.Models {
		emb, md, err := tables.ReadEmbeddings(memory.DefaultAllocator, layout.New(run, pipeline.Shard{}).Embeddings(m.Name))
		if err != nil {
			t.Fatal(err)
		}
		checkMeta(t, "embeddings/"+m.Name, md, opts.Version)
		if len(emb) != len(lesions) {
			t.Errorf("%s: %d embeddings, want %d", m.Name, len(emb), len(lesions))
		}
		for _, e := range emb {
			var ss float64
			for _, v := range e.Vector {
				ss += float64(v) * float64(v)
			}
			if len(e.Vector) != m.EmbeddingDim || math.Abs(ss-1) > 1e-3 || e.Model != m.Name {
				t.Errorf("%s %s: dim %d, |v|² %.4f, model %q", m.Name, e.LesionID, len(e.Vector), ss, e.Model)
			}
		}
	}

	// similarity: k closest and k farthest per lesion and model, and the model agreement.
	edges, md, err := tables.ReadEdges(layout.New(run, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, "similarity/edges.arrow", md, opts.Version)
	if want := nModels * len(lesions) * 2 * min(k, len(lesions)-1); len(edges) != want {
		t.Errorf("edges.arrow: %d rows, want %d", len(edges), want)
	}
	for _, e := range edges {
		if e.QueryLesionID == e.MatchLesionID || e.Rank < 1 || int(e.Rank) > k ||
			math.Abs(e.SimilarityPct-math.Max(0, 1-e.CosineDistance)*100) > 1e-9 {
			t.Fatalf("bad edge %+v", e)
		}
	}
	agr, _, err := tables.ReadAgreement(layout.New(run, pipeline.Shard{}).Agreement())
	if err != nil {
		t.Fatal(err)
	}
	if len(agr) == 0 {
		t.Error("agreement.arrow is empty")
	}
	checkParquetCopies(t, run, reg)

	// The map is meaningful: the closest matches share the tumour's kind more often than
	// chance. (On 12 patients the estimate is noisy; demo.TestDemoMapIsMeaningful asserts 2×
	// on the full cohort, and so does this test when run with 30 patients or more.)
	if len(res.Agreement) != nModels {
		t.Fatalf("agreement with the ground truth for %d models, want %d", len(res.Agreement), nModels)
	}
	var ratio float64
	for _, a := range res.Agreement {
		t.Logf("%s: closest share the kind %.2f (chance %.2f)", a.Model, a.Same, a.Chance)
		ratio += a.Same / a.Chance / float64(nModels)
	}
	want := 1.0
	if n >= 30 {
		want = 2.0
	}
	if ratio <= want {
		t.Errorf("closest matches share the kind %.2f × chance on average, want > %.1f", ratio, want)
	}

	// The report, and the manifest.
	html, err := os.ReadFile(res.Report)
	if err != nil || !bytes.Contains(html, []byte("<html")) {
		t.Fatalf("report %s: %v", res.Report, err)
	}
	if _, err := os.Stat(filepath.Join(run, "manifest.json")); err != nil {
		t.Error(err)
	}
	checkInBrowser(t, res.Report, len(lesions), len(edges))

	// A second run resumes: no emulator, nothing recomputed, the same report.
	t1 := time.Now()
	again, err := demorun.Run(ctx, opts)
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	took := time.Since(t1)
	t.Logf("resumed run: %v", took.Round(time.Millisecond))
	if again.Services || again.Code != 0 {
		t.Errorf("resumed run started the emulators (%v) or exited %d", again.Services, again.Code)
	}
	if html2, _ := os.ReadFile(again.Report); !bytes.Equal(html, html2) {
		t.Error("the resumed run changed the report")
	}
	if took > 30*time.Second {
		t.Errorf("resumed run took %v, want seconds", took)
	}
}

// checkMeta checks the standard schema metadata every table carries.
func checkMeta(t *testing.T, name string, md interface{ FindKey(string) int }, version string) {
	t.Helper()
	type kv interface {
		FindKey(string) int
		Values() []string
	}
	m, ok := md.(kv)
	if !ok {
		t.Fatalf("%s: metadata of type %T", name, md)
	}
	for _, k := range []string{tables.MetaPipelineVersion, tables.MetaConfigHash, tables.MetaIDCVersion} {
		i := m.FindKey(k)
		if i < 0 || m.Values()[i] == "" {
			t.Errorf("%s: schema metadata %s missing", name, k)
		}
	}
	if i := m.FindKey(tables.MetaPipelineVersion); i >= 0 && m.Values()[i] != version {
		t.Errorf("%s: pipeline version %q, want %q", name, m.Values()[i], version)
	}
}

// checkTruthTable checks the demo's ground truth written beside the run: one row per lesion, in
// the lesions table's order, with the kind of the tumour the lesion was matched to.
func checkTruthTable(t *testing.T, run string, lesions []tables.Lesion, match map[string]*demo.Tumour) {
	t.Helper()
	tab, err := tables.ReadFile(filepath.Join(run, demo.TruthTableName), memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("the demo's ground-truth table: %v", err)
	}
	defer tab.Release()
	if len(tab.Batches) != 1 || tab.Batches[0].NumRows() != int64(len(lesions)) {
		t.Fatalf("%s: %d batches, want one of %d rows", demo.TruthTableName, len(tab.Batches), len(lesions))
	}
	b := tab.Batches[0]
	ids, kinds := b.Column(0).(*array.String), b.Column(2).(*array.String)
	for i, l := range lesions {
		tu := match[l.LesionID]
		if tu == nil {
			continue
		}
		if ids.Value(i) != l.LesionID || kinds.Value(i) != tu.Kind {
			t.Errorf("%s row %d: %s %s, want %s %s", demo.TruthTableName, i, ids.Value(i), kinds.Value(i), l.LesionID, tu.Kind)
		}
	}
	md := tab.Schema.Metadata()
	seed, hash := md.FindKey(demo.MetaDemoSeed), md.FindKey(tables.MetaConfigHash)
	if seed < 0 || md.Values()[seed] != strconv.FormatInt(demo.DefaultSeed, 10) || hash < 0 || md.Values()[hash] == "" {
		t.Errorf("%s: metadata %v", demo.TruthTableName, tab.Schema.Metadata())
	}
}

// checkParquetCopies checks that every table of the run has its Parquet copy beside it
// (notebooks/test_parquet.py opens them with DuckDB and compares them with the Arrow files).
func checkParquetCopies(t *testing.T, run string, reg *models.Registry) {
	t.Helper()
	lay := layout.New(run, pipeline.Shard{})
	paths := []string{lay.Lesions(), lay.Instances(), lay.Clinical(), lay.Patches(), lay.Edges(), lay.Agreement(),
		filepath.Join(run, demo.TruthTableName)}
	for _, m := range reg.Models {
		paths = append(paths, lay.Embeddings(m.Name))
	}
	for _, p := range paths {
		if _, err := os.Stat(arrowfile.ParquetPath(p)); err != nil {
			t.Errorf("no Parquet copy of %s: %v", p, err)
		}
	}
}
