package embed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"

	"connectome/internal/atomicfile"
	"connectome/internal/encoders"
	"connectome/internal/layout"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/models/onnxrt/onnxrttest"
	"connectome/pipeline"

	"io"
)

var ortEnv *onnxrttest.Env

func TestMain(m *testing.M) {
	ortEnv = onnxrttest.Open()
	code := m.Run()
	ortEnv.Close()
	// Every goroutine of the stage (readers, batchers, writers) must be gone after a run,
	// interrupted ones included.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fixture is a run directory with lesions and tensors, and a models directory.
type fixture struct {
	runDir, modelsDir string
	reg               *models.Registry
	lesions           []tables.Lesion
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	reg, err := models.Parse("test-models.yaml", []byte(onnxrttest.TestModelsYAML))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{runDir: t.TempDir(), modelsDir: t.TempDir(), reg: reg}
	if _, err := encoders.WriteDemoModels(f.modelsDir, reg); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < n; i++ {
		l := tables.Lesion{LesionID: fmt.Sprintf("L%03d", i), PatientID: fmt.Sprintf("P%02d", i/2), StudyYear: -1}
		f.lesions = append(f.lesions, l)
		for _, s := range reg.Models {
			writeTensor(t, layout.New(f.runDir, pipeline.Shard{}).Tensor(s.Name, l.LesionID), s.InputShape(1), rng)
		}
	}
	if err := tables.WriteLesions(layout.New(f.runDir, pipeline.Shard{}).Lesions(), f.lesions, arrow.Metadata{}); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeTensor(t testing.TB, path string, shape []int64, rng *rand.Rand) {
	t.Helper()
	dims := make([]int, len(shape))
	n := 1
	for i, d := range shape {
		dims[i] = int(d)
		n *= int(d)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.Float64())
	}
	if err := atomicfile.Write(path, func(w io.Writer) error { return patch.WriteNPY(w, dims, data) }); err != nil {
		t.Fatal(err)
	}
}

// recorder is the progress display of a test's stage context, and what the run recorded.
type recorder struct {
	mu       sync.Mutex
	failures map[string][]pipeline.Failure
	counts   map[string]int64
	added    atomic.Int64
	log      bytes.Buffer
}

func (r *recorder) Start(string, int64) pipeline.Bar { return r }
func (r *recorder) SetTotal(int64)                   {}
func (r *recorder) Add(n int64)                      { r.added.Add(n) }
func (r *recorder) Finish(bool)                      {}

// items are the fixture's lesions as the engine streams them.
func (f *fixture) items() []pipeline.Item {
	items := make([]pipeline.Item, len(f.lesions))
	for i, l := range f.lesions {
		items[i] = pipeline.Item{ID: l.LesionID, Payload: &tables.LesionSeries{Lesion: l}}
	}
	return items
}

// context is the embed stage's context over the fixture's run directory: every lesion, or,
// when streamed is not nil, only those lesions arriving from an upstream stage.
func (f *fixture) context(t *testing.T, resume bool, streamed []string) (*pipeline.Context, *recorder) {
	t.Helper()
	rec := &recorder{failures: map[string][]pipeline.Failure{}}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	cfg := pipeline.ContextConfig{Stage: layout.Embed, RunDir: f.runDir, ConfigHash: "hash", Resume: resume, Workers: 2,
		Log: slog.New(slog.NewTextHandler(&syncWriter{w: &rec.log, mu: &rec.mu}, nil)), Mem: mem, Progress: rec, Items: f.items()}
	if streamed != nil {
		in := make(chan pipeline.Item, len(streamed))
		for _, it := range cfg.Items {
			if slices.Contains(streamed, it.ID) {
				in <- it
			}
		}
		close(in)
		cfg.In = in
	}
	sc, err := pipeline.NewContext(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sc, rec
}

// run runs the stage in sc and records its failures and counts in rec.
func run(t *testing.T, ctx context.Context, st *Stage, sc *pipeline.Context, rec *recorder) error {
	t.Helper()
	err := st.Run(ctx, sc)
	if cerr := sc.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	fs, ferr := sc.Failures()
	if ferr != nil {
		t.Fatal(ferr)
	}
	for _, f := range fs {
		rec.failures[f.ItemID] = append(rec.failures[f.ItemID], f)
	}
	rec.counts = sc.Counts()
	return err
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (f *fixture) settings(batch int) Settings {
	s := DefaultSettings()
	s.ModelsDir = f.modelsDir
	s.BatchSize = batch
	s.Threads = 1
	return s
}

func readTable(t *testing.T, runDir, model string) []tables.Embedding {
	t.Helper()
	rows, md, err := tables.ReadEmbeddings(memory.DefaultAllocator, layout.New(runDir, pipeline.Shard{}).Embeddings(model))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{tables.MetaModelSHA256, tables.MetaPreprocessing, "connectome.config_hash"} {
		if i := md.FindKey(k); i < 0 || md.Values()[i] == "" {
			t.Errorf("%s: metadata %s missing", model, k)
		}
	}
	return rows
}

func sameTables(t *testing.T, a, b []tables.Embedding, relTol float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d rows vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].LesionID != b[i].LesionID || a[i].PatientID != b[i].PatientID || a[i].Model != b[i].Model {
			t.Fatalf("row %d: %+v vs %+v", i, a[i].LesionID, b[i].LesionID)
		}
		var num, den float64
		for k := range a[i].Vector {
			d := float64(a[i].Vector[k] - b[i].Vector[k])
			num += d * d
			den += float64(a[i].Vector[k]) * float64(a[i].Vector[k])
		}
		if rel := math.Sqrt(num / den); rel > relTol {
			t.Errorf("row %d (%s): relative difference %g > %g", i, a[i].LesionID, rel, relTol)
		}
	}
}

func TestBatch1And8Agree(t *testing.T) {
	rt := ortEnv.Require(t)
	f := newFixture(t, 11) // 11 = 8 + 3: the last batch of 8 is padded
	runs := map[int][]tables.Embedding{}
	for _, batch := range []int{1, 8} {
		g := *f
		g.runDir = filepath.Join(t.TempDir(), "run")
		copyTree(t, f.runDir, g.runDir)
		sc, rec := g.context(t, false, nil)
		if err := run(t, context.Background(), New(f.settings(batch), f.reg, rt), sc, rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.failures) > 0 {
			t.Fatalf("failures: %v", rec.failures)
		}
		if rec.counts["embeddings"] != 22 {
			t.Errorf("batch %d: counts %v", batch, rec.counts)
		}
		runs[batch] = readTable(t, g.runDir, "test-conv-a")
		// The stage's rows equal a direct run of the reference interpreter on the same tensor.
		if batch == 8 {
			checkAgainstReference(t, g.runDir, f, "test-conv-a", runs[8])
		}
	}
	if len(runs[1]) != 11 || runs[1][0].LesionID != "L000" || runs[1][10].LesionID != "L010" || runs[1][3].PatientID != "P01" {
		t.Fatalf("table rows: %d, first %+v", len(runs[1]), runs[1][0].LesionID)
	}
	sameTables(t, runs[1], runs[8], 1e-6)
}

func checkAgainstReference(t *testing.T, runDir string, f *fixture, model string, rows []tables.Embedding) {
	t.Helper()
	spec, _ := f.reg.Get(model)
	m, err := encoders.DemoModelFor(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 7, 10} {
		fh, err := os.Open(layout.New(runDir, pipeline.Shard{}).Tensor(model, rows[i].LesionID))
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := patch.ReadNPY(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := encoders.Eval(&m.Graph, map[string]*encoders.Array{encoders.InputName: {Shape: shape, Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		sameTables(t, []tables.Embedding{rows[i]}, []tables.Embedding{{LesionID: rows[i].LesionID, PatientID: rows[i].PatientID,
			Model: model, Vector: out[encoders.OutputName].Data}}, 1e-5)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return atomicfile.WriteBytes(filepath.Join(to, rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestResumeAfterInterruption(t *testing.T) {
	rt := ortEnv.Require(t)
	// Enough batches that the writer cannot have committed all of them when the cancel lands.
	const n = 40
	f := newFixture(t, n)
	st := New(f.settings(2), f.reg, rt)

	ref := *f
	ref.runDir = filepath.Join(t.TempDir(), "ref")
	copyTree(t, f.runDir, ref.runDir)
	sc, rec := ref.context(t, false, nil)
	if err := run(t, context.Background(), st, sc, rec); err != nil {
		t.Fatal(err)
	}

	// Interrupt once a few batches of model a are committed.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if parts, _ := filepath.Glob(filepath.Join(layout.New(f.runDir, pipeline.Shard{}).EmbedParts("test-conv-a"), "part-*.arrow")); len(parts) >= 2 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	sc, rec = f.context(t, false, nil)
	err := run(t, ctx, st, sc, rec)
	if err == nil {
		t.Fatal("interrupted run returned nil")
	}
	if _, err := os.Stat(layout.New(f.runDir, pipeline.Shard{}).Embeddings("test-conv-a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted run wrote the final table: %v", err)
	}
	sc, rec = f.context(t, true, nil)
	if err := run(t, context.Background(), st, sc, rec); err != nil {
		t.Fatal(err)
	}
	if rec.counts["resumed"] < 4 || rec.counts["resumed"] >= 2*n {
		t.Errorf("resumed %d pairs, want some but not all", rec.counts["resumed"])
	}
	for _, model := range []string{"test-conv-a", "test-conv-b"} {
		got, want := readTable(t, f.runDir, model), readTable(t, ref.runDir, model)
		seen := map[string]bool{}
		for _, r := range got {
			if seen[r.LesionID] {
				t.Errorf("%s: lesion %s twice", model, r.LesionID)
			}
			seen[r.LesionID] = true
		}
		sameTables(t, got, want, 1e-6)
	}
	// Resuming a finished stage again changes nothing.
	sc, rec = f.context(t, true, nil)
	if err := run(t, context.Background(), st, sc, rec); err != nil {
		t.Fatal(err)
	}
	if rec.counts["resumed"] != 2*n || rec.added.Load() != n {
		t.Errorf("second resume: resumed %d, progress %d", rec.counts["resumed"], rec.added.Load())
	}
}

func TestModelFileProblemsHalt(t *testing.T) {
	rt := ortEnv.Require(t)
	f := newFixture(t, 2)
	cases := []struct {
		name  string
		edit  func(s *models.Spec)
		wants []string
	}{
		{"missing", func(s *models.Spec) { s.Name, s.ONNX = "FMCIB-like", "nothing-here.onnx" },
			[]string{"nothing-here.onnx", "missing", "the tests write these generated encoders"}},
		{"checksum", func(s *models.Spec) { s.SHA256 = strings.Repeat("0", 64) },
			[]string{"test-conv-a.onnx", "sha256", strings.Repeat("0", 64)}},
		{"dimension", func(s *models.Spec) { s.EmbeddingDim = 10 },
			[]string{"dimension 12", "embedding_dim is 10"}},
		{"input shape", func(s *models.Spec) { s.Preprocess.ROI = [3]int{16, 16, 32} },
			[]string{"want (batch, 1, 16, 16, 32)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg, _ := models.Parse("test-models.yaml", []byte(onnxrttest.TestModelsYAML))
			reg.Models = reg.Models[:1]
			c.edit(&reg.Models[0])
			sc, rec := f.context(t, false, nil)
			err := run(t, context.Background(), New(f.settings(0), reg, rt), sc, rec)
			if !pipeline.IsHalt(err) {
				t.Fatalf("err %v, want a halt", err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDevices(t *testing.T) {
	rt := ortEnv.Require(t)
	if os.Getenv("CONNECTOME_HAVE_CUDA") != "" {
		t.Skip("this machine has CUDA")
	}
	f := newFixture(t, 3)
	s := f.settings(0)
	s.Device = "cuda"
	sc, rec := f.context(t, false, nil)
	err := run(t, context.Background(), New(s, f.reg, rt), sc, rec)
	if !pipeline.IsHalt(err) || !errors.Is(err, onnxrt.ErrCUDAUnavailable) || !strings.Contains(err.Error(), "--device cpu") {
		t.Fatalf("device cuda without CUDA: %v", err)
	}
	if _, err := os.Stat(layout.New(f.runDir, pipeline.Shard{}).EmbedParts("test-conv-a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cuda failure did not stop at once: %v", err)
	}
	s.Device = "auto"
	sc, rec = f.context(t, false, nil)
	if err := run(t, context.Background(), New(s, f.reg, rt), sc, rec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.log.String(), "falling back to CPU") || rec.counts["embeddings"] != 6 {
		t.Errorf("auto: log %q, counts %v", rec.log.String(), rec.counts)
	}
}

func TestItemFailures(t *testing.T) {
	rt := ortEnv.Require(t)
	f := newFixture(t, 5)
	// L001: no tensor for model b; L002: a tensor of the wrong shape for a; L003: no tensors.
	os.Remove(layout.New(f.runDir, pipeline.Shard{}).Tensor("test-conv-b", "L001"))
	writeTensor(t, layout.New(f.runDir, pipeline.Shard{}).Tensor("test-conv-a", "L002"), []int64{1, 1, 8, 8, 8}, rand.New(rand.NewPCG(1, 1)))
	os.Remove(layout.New(f.runDir, pipeline.Shard{}).Tensor("test-conv-a", "L003"))
	os.Remove(layout.New(f.runDir, pipeline.Shard{}).Tensor("test-conv-b", "L003"))

	sc, rec := f.context(t, false, nil)
	if err := run(t, context.Background(), New(f.settings(0), f.reg, rt), sc, rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.failures) != 2 || rec.failures["L001"][0].ErrorClass != pipeline.ClassNotFound ||
		rec.failures["L002"][0].ErrorClass != pipeline.ClassInput {
		t.Errorf("failures %v", rec.failures)
	}
	if rec.counts["no_tensors"] != 1 {
		t.Errorf("counts %v", rec.counts)
	}
	if a := readTable(t, f.runDir, "test-conv-a"); len(a) != 3 {
		t.Errorf("model a: %d rows, want 3", len(a))
	}
	// Streamed from preprocess, a lesion without tensors is a failure.
	sc, rec = f.context(t, false, []string{"L003"})
	if err := run(t, context.Background(), New(f.settings(0), f.reg, rt), sc, rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.failures["L003"]) != 2 {
		t.Errorf("streamed: failures %v", rec.failures)
	}
}

// BenchmarkStage runs the whole stage (read .npy, batch, infer, commit parts, assemble) on 32
// lesions of the demo encoder demo-cnn-48 at batch 1 and 8, reported as patches/s.
func BenchmarkStage(b *testing.B) {
	rt := ortEnv.Require(b)
	reg, err := models.Parse("bench.yaml", []byte(`obtain: the benchmark writes them
models:
  - name: demo-cnn-48
    onnx: demo-cnn-48.onnx
    input: input
    output: embedding
    embedding_dim: 128
    batch_size: 8
    preprocess: {axcodes: RAS, pixdim: [1, 1, 1], roi: [48, 48, 48], hu_range: [-1024, 2048], clamp: [0, 1]}
`))
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{runDir: b.TempDir(), modelsDir: b.TempDir(), reg: reg}
	if _, err := encoders.WriteDemoModels(f.modelsDir, reg); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 32
	for i := 0; i < n; i++ {
		l := tables.Lesion{LesionID: fmt.Sprintf("L%03d", i), PatientID: "P", StudyYear: -1}
		f.lesions = append(f.lesions, l)
		writeTensor(b, layout.New(f.runDir, pipeline.Shard{}).Tensor("demo-cnn-48", l.LesionID), reg.Models[0].InputShape(1), rng)
	}
	if err := tables.WriteLesions(layout.New(f.runDir, pipeline.Shard{}).Lesions(), f.lesions, arrow.Metadata{}); err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("demo-cnn-48/batch=%d", batch), func(b *testing.B) {
			s := f.settings(batch)
			s.Threads = 2
			for i := 0; i < b.N; i++ {
				sc, err := pipeline.NewContext(pipeline.ContextConfig{Stage: layout.Embed, RunDir: f.runDir, ConfigHash: "bench",
					Workers: 2, Items: f.items()})
				if err != nil {
					b.Fatal(err)
				}
				if err := New(s, reg, rt).Run(context.Background(), sc); err != nil {
					b.Fatal(err)
				}
				if err := sc.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "patches/s")
		})
	}
}

// TestGPUStage runs the stage with --device cuda and with cpu on the same tensors and compares
// the tables (cosine ≥ 0.9999 per row). Only where scripts/gpu-check.sh sets CONNECTOME_GPU_CHECK.
func TestGPUStage(t *testing.T) {
	if os.Getenv("CONNECTOME_GPU_CHECK") == "" {
		t.Skip("set CONNECTOME_GPU_CHECK=1 on a GPU machine (scripts/gpu-check.sh)")
	}
	rt := ortEnv.Require(t)
	f := newFixture(t, 19)
	tabs := map[string][]tables.Embedding{}
	for _, dev := range []string{"cpu", "cuda"} {
		g := *f
		g.runDir = filepath.Join(t.TempDir(), dev)
		copyTree(t, f.runDir, g.runDir)
		s := f.settings(8)
		s.Device = dev
		s.Threads = 0
		sc, rec := g.context(t, false, nil)
		if err := run(t, context.Background(), New(s, f.reg, rt), sc, rec); err != nil {
			t.Fatalf("%s: %v", dev, err)
		}
		if len(rec.failures) > 0 {
			t.Fatalf("%s: failures %v", dev, rec.failures)
		}
		tabs[dev] = readTable(t, g.runDir, "test-conv-a")
	}
	a, b := tabs["cpu"], tabs["cuda"]
	if len(a) != len(b) || len(a) != 19 {
		t.Fatalf("rows: cpu %d, cuda %d", len(a), len(b))
	}
	worst := 1.0
	for i := range a {
		var dot, na, nb float64
		for k := range a[i].Vector {
			x, y := float64(a[i].Vector[k]), float64(b[i].Vector[k])
			dot, na, nb = dot+x*y, na+x*x, nb+y*y
		}
		worst = math.Min(worst, dot/math.Sqrt(na*nb))
	}
	t.Logf("GPU-STAGE worst-cosine %.7f", worst)
	if worst < 0.9999 {
		t.Errorf("stage on CUDA vs CPU: cosine %.6f < 0.9999", worst)
	}
}

// A model whose file leaves the output size open is checked on its first batch.
func TestOutputDimCheckedAtRun(t *testing.T) {
	rt := ortEnv.Require(t)
	f := newFixture(t, 3)
	reg, _ := models.Parse("test-models.yaml", []byte(onnxrttest.TestModelsYAML))
	reg.Models = reg.Models[:1]
	reg.Models[0].EmbeddingDim = 10 // the file computes 12
	m := encoders.TestEncoder("test-conv-a", [5]int64{0, 1, 16, 16, 16}, 12, encoders.Seed("test-conv-a"))
	m.Graph.Outputs[0].Dims = []onnx.Dim{{Param: "N"}, {Param: "D"}}
	if err := m.WriteFile(filepath.Join(f.modelsDir, "test-conv-a.onnx")); err != nil {
		t.Fatal(err)
	}
	sc, rec := f.context(t, false, nil)
	err := run(t, context.Background(), New(f.settings(0), reg, rt), sc, rec)
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "output shape [4 12], want [4 10]") {
		t.Fatalf("err %v", err)
	}
}

// TestPreflight: the problems that would halt embed are found before the run starts.
func TestPreflight(t *testing.T) {
	rt := ortEnv.Require(t)
	f := newFixture(t, 2)
	if err := New(f.settings(0), f.reg, rt).Preflight(context.Background()); err != nil {
		t.Fatalf("good setup: %v", err)
	}
	reg, _ := models.Parse("test-models.yaml", []byte(onnxrttest.TestModelsYAML))
	reg.Models[0].ONNX = "nothing-here.onnx"
	err := New(f.settings(0), reg, rt).Preflight(context.Background())
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "nothing-here.onnx") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
	if os.Getenv("CONNECTOME_HAVE_CUDA") == "" {
		s := f.settings(0)
		s.Device = "cuda"
		if err := New(s, f.reg, rt).Preflight(context.Background()); !errors.Is(err, onnxrt.ErrCUDAUnavailable) {
			t.Fatalf("device cuda without CUDA: %v", err)
		}
		s.Device = "auto"
		if err := New(s, f.reg, rt).Preflight(context.Background()); err != nil {
			t.Fatalf("device auto must not fail the preflight: %v", err)
		}
	}
}
