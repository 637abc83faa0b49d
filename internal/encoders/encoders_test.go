package encoders_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/encoders"
	"connectome/internal/testenv"

	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/models/onnxrt/onnxrttest"
)

var env *onnxrttest.Env

func TestMain(m *testing.M) {
	env = onnxrttest.Open()
	code := m.Run()
	env.Close()
	os.Exit(code)
}

func randomInput(rng *rand.Rand, shape ...int) *encoders.Array {
	a := encoders.NewArray(shape...)
	for i := range a.Data {
		a.Data[i] = float32(rng.Float64())
	}
	return a
}

// runORT writes m to a temp file and runs it on x with ONNX Runtime on CPU.
func runORT(t *testing.T, rt *onnxrt.Runtime, m *onnx.Model, x *encoders.Array) ([]int64, []float32) {
	t.Helper()
	path := filepath.Join(t.TempDir(), m.Graph.Name+".onnx")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	s, err := rt.Open(path, encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	shape := make([]int64, len(x.Shape))
	for i, d := range x.Shape {
		shape[i] = int64(d)
	}
	outShape, out, err := s.Run(shape, x.Data)
	if err != nil {
		t.Fatal(err)
	}
	return outShape, out
}

// TestORTMatchesReference checks that ONNX Runtime loads and runs what the writer produces,
// and that it computes what the Go reference interpreter computes.
func TestORTMatchesReference(t *testing.T) {
	rt := env.Require(t)
	rng := rand.New(rand.NewPCG(1, 2))
	demo, err := encoders.DemoEncoder("demo-cnn-20", [5]int64{0, 1, 20, 24, 20}, 96, 7)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		model *onnx.Model
		in    []int
		dim   int
	}{
		{"test-conv", encoders.TestEncoder("test-conv", [5]int64{0, 1, 16, 16, 16}, 12, 3), []int{3, 1, 16, 16, 16}, 12},
		{"test-conv-fixed-batch", encoders.TestEncoder("test-conv-b2", [5]int64{2, 1, 8, 12, 16}, 5, 4), []int{2, 1, 8, 12, 16}, 5},
		{"demo-cnn", demo, []int{2, 1, 20, 24, 20}, 96},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := randomInput(rng, c.in...)
			shape, got := runORT(t, rt, c.model, x)
			if len(shape) != 2 || shape[0] != int64(c.in[0]) || shape[1] != int64(c.dim) {
				t.Fatalf("ORT output shape %v, want [%d %d]", shape, c.in[0], c.dim)
			}
			ref, err := encoders.Eval(&c.model.Graph, map[string]*encoders.Array{encoders.InputName: x})
			if err != nil {
				t.Fatal(err)
			}
			want := ref[encoders.OutputName].Data
			if len(want) != len(got) {
				t.Fatalf("reference has %d values, ORT %d", len(want), len(got))
			}
			var maxDiff float64
			for i := range want {
				maxDiff = math.Max(maxDiff, math.Abs(float64(want[i]-got[i])))
			}
			// Outputs are unit vectors; float32 summation order differs between the two.
			if maxDiff > 2e-5 {
				t.Errorf("max |ORT − reference| = %g", maxDiff)
			}
			for r := 0; r < c.in[0]; r++ {
				var ss float64
				for _, v := range got[r*c.dim : (r+1)*c.dim] {
					ss += float64(v) * float64(v)
				}
				if math.Abs(ss-1) > 1e-4 {
					t.Errorf("row %d: |e|² = %g, want 1", r, ss)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	a, err := encoders.DemoEncoder("demo-cnn-48", [5]int64{0, 1, 24, 24, 24}, 64, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := encoders.DemoEncoder("demo-cnn-48", [5]int64{0, 1, 24, 24, 24}, 64, 5)
	c, _ := encoders.DemoEncoder("demo-cnn-48", [5]int64{0, 1, 24, 24, 24}, 64, 6)
	if !bytes.Equal(a.Marshal(), b.Marshal()) {
		t.Error("same seed, different bytes")
	}
	if bytes.Equal(a.Marshal(), c.Marshal()) {
		t.Error("different seeds, same bytes")
	}
	if encoders.Seed("demo-cnn-48") == encoders.Seed("demo-cnn-64") {
		t.Error("seed collision")
	}
}

func TestDemoModelForRefusesPublishedNames(t *testing.T) {
	for _, name := range []string{"FMCIB", "CTFM", "my-model"} {
		s := &models.Spec{Name: name, Input: encoders.InputName, Output: encoders.OutputName, EmbeddingDim: 8,
			Preprocess: models.Preprocess{Axcodes: "RAS", ROI: [3]int{16, 16, 16}}}
		if _, err := encoders.DemoModelFor(s); err == nil {
			t.Errorf("%s: generated a stand-in under a published or unknown name", name)
		}
	}
}

// lesionKinds are synthetic tumour kinds on a lung background ([0,1] scale of HU −1024..2048).
var lesionKinds = []struct {
	name            string
	radius, density float64 // outer sphere (voxels, intensity)
	core, coreDens  float64 // optional solid core
}{
	{"solid-small", 3.5, 0.34, 0, 0},
	{"solid-large", 9, 0.34, 0, 0},
	{"ground-glass", 7, 0.17, 0, 0},
	{"part-solid", 8, 0.17, 3, 0.34},
}

func lesionPatch(rng *rand.Rand, kind int, n int) []float32 {
	k := lesionKinds[kind]
	r := k.radius * (0.85 + 0.3*rng.Float64())
	c := [3]float64{}
	for a := range c {
		c[a] = float64(n)/2 + rng.Float64()*4 - 2
	}
	out := make([]float32, n*n*n)
	for z := 0; z < n; z++ {
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				d := math.Sqrt(sq(float64(z)-c[0]) + sq(float64(y)-c[1]) + sq(float64(x)-c[2]))
				v := 0.06
				// soft edge over about one voxel
				v += (k.density - 0.06) / (1 + math.Exp((d-r)*3))
				if k.core > 0 {
					v += (k.coreDens - k.density) / (1 + math.Exp((d-k.core)*3))
				}
				v += rng.NormFloat64() * 0.015
				out[(z*n+y)*n+x] = float32(min(max(v, 0), 1))
			}
		}
	}
	return out
}

func sq(v float64) float64 { return v * v }

// TestDemoEncoderSeparatesKinds is what the demo relies on: a lesion's nearest neighbours by
// cosine are mostly of its own kind, far above chance (1/4).
func TestDemoEncoderSeparatesKinds(t *testing.T) {
	rt := env.Require(t)
	const n, per, dim = 48, 6, 128
	m, err := encoders.DemoEncoder("demo-cnn-48", [5]int64{0, 1, n, n, n}, dim, encoders.Seed("demo-cnn-48"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	total := per * len(lesionKinds)
	x := encoders.NewArray(total, 1, n, n, n)
	kinds := make([]int, total)
	for i := 0; i < total; i++ {
		kinds[i] = i % len(lesionKinds)
		copy(x.Data[i*n*n*n:], lesionPatch(rng, kinds[i], n))
	}
	_, emb := runORT(t, rt, m, x)
	agree, top := 0, 0
	for i := 0; i < total; i++ {
		type nb struct {
			j   int
			cos float64
		}
		var best []nb
		for j := 0; j < total; j++ {
			if j == i {
				continue
			}
			var dot float64
			for d := 0; d < dim; d++ {
				dot += float64(emb[i*dim+d]) * float64(emb[j*dim+d])
			}
			best = append(best, nb{j, dot})
		}
		for a := 0; a < len(best); a++ { // partial selection sort: top 3
			for b := a + 1; b < len(best); b++ {
				if best[b].cos > best[a].cos {
					best[a], best[b] = best[b], best[a]
				}
			}
			if a == 2 {
				break
			}
		}
		if kinds[best[0].j] == kinds[i] {
			top++
		}
		for _, b := range best[:3] {
			if kinds[b.j] == kinds[i] {
				agree++
			}
		}
	}
	top1 := float64(top) / float64(total)
	top3 := float64(agree) / float64(3*total)
	t.Logf("nearest neighbour shares the kind: %.2f; top-3: %.2f (chance 0.22)", top1, top3)
	if top1 < 0.8 || top3 < 0.7 {
		t.Errorf("demo encoder does not separate lesion kinds: top-1 %.2f, top-3 %.2f", top1, top3)
	}
}

// TestDemoModelsFile writes the demo encoders of configs/demo-models.yaml: the recorded sha256
// must match the generated bytes, and a second write keeps the files.
func TestDemoModelsFile(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := models.Load(filepath.Join(root, "configs", "demo-models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths, err := encoders.WriteDemoModels(dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(reg.Models) {
		t.Fatalf("wrote %v", paths)
	}
	st, _ := os.Stat(paths[0])
	if _, err := encoders.WriteDemoModels(dir, reg); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(paths[0]); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("an up-to-date file was rewritten")
	}
	reg.Models[0].SHA256 = "00"
	if _, err := encoders.WriteDemoModels(t.TempDir(), reg); err == nil {
		t.Error("a sha256 mismatch was not reported")
	}
	if rt := env.Require(t); rt != nil {
		for i := range reg.Models {
			s := &reg.Models[i]
			sess, err := rt.Open(paths[i], s.Input, s.Output, onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			shape := s.InputShape(2)
			n := int(shape[0] * shape[2] * shape[3] * shape[4])
			out, _, err := sess.Run(shape, make([]float32, n))
			if err != nil || out[0] != 2 || out[1] != int64(s.EmbeddingDim) {
				t.Errorf("%s: output %v, %v", s.Name, out, err)
			}
		}
	}
}
