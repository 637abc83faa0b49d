package onnxrt_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/encoders"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
)

// The GPU checks run only where scripts/gpu-check.sh sets CONNECTOME_GPU_CHECK: there a CUDA
// provider that does not load is a failure, not a skip.

func gpuCheck(t testing.TB) *onnxrt.Runtime {
	t.Helper()
	if os.Getenv("CONNECTOME_GPU_CHECK") == "" {
		t.Skip("set CONNECTOME_GPU_CHECK=1 on a GPU machine (scripts/gpu-check.sh)")
	}
	rt := env.Require(t)
	if _, err := rt.CheckDevice(gpuOptions()); err != nil {
		t.Fatalf("CUDA provider: %v", err)
	}
	return rt
}

func gpuOptions() onnxrt.Options {
	algo := os.Getenv("CONNECTOME_CUDNN_ALGO")
	if algo == "" {
		algo = "EXHAUSTIVE"
	}
	return onnxrt.Options{Device: onnxrt.DeviceCUDA, CUDNNConvAlgoSearch: algo}
}

type gpuModel struct {
	name string
	roi  int64
	m    *onnx.Model
}

func gpuModels(t testing.TB) []gpuModel {
	var out []gpuModel
	for _, c := range []struct {
		name string
		roi  int64
		dim  int
	}{{"demo-cnn-48", 48, 128}, {"demo-cnn-64", 64, 256}} {
		m, err := encoders.DemoEncoder(c.name, [5]int64{0, 1, c.roi, c.roi, c.roi}, c.dim, encoders.Seed(c.name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gpuModel{c.name, c.roi, m})
	}
	out = append(out, gpuModel{"test-conv-48", 48, encoders.TestEncoder("test-conv-48", [5]int64{0, 1, 48, 48, 48}, 64, 9)})
	return out
}

func randomBatch(n int, roi int64, seed uint64) ([]int64, []float32) {
	shape := []int64{int64(n), 1, roi, roi, roi}
	data := make([]float32, int64(n)*roi*roi*roi)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range data {
		data[i] = float32(rng.Float64())
	}
	return shape, data
}

// TestGPUParity compares CUDA with CPU on the test encoders: cosine ≥ 0.9999 for every row.
func TestGPUParity(t *testing.T) {
	rt := gpuCheck(t)
	for _, g := range gpuModels(t) {
		path := filepath.Join(t.TempDir(), g.name+".onnx")
		if err := g.m.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		cpu, err := rt.Open(path, encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceCPU})
		if err != nil {
			t.Fatal(err)
		}
		gpu, err := rt.Open(path, encoders.InputName, encoders.OutputName, gpuOptions())
		if err != nil {
			t.Fatal(err)
		}
		if gpu.Provider != "CUDA" {
			t.Fatalf("%s: session on %s", g.name, gpu.Provider)
		}
		shape, data := randomBatch(8, g.roi, 3)
		_, want, err := cpu.Run(shape, data)
		if err != nil {
			t.Fatal(err)
		}
		outShape, got, err := gpu.Run(shape, data)
		if err != nil {
			t.Fatal(err)
		}
		dim := int(outShape[1])
		worst := 1.0
		for r := 0; r < 8; r++ {
			var dot, na, nb float64
			for k := 0; k < dim; k++ {
				a, b := float64(want[r*dim+k]), float64(got[r*dim+k])
				dot, na, nb = dot+a*b, na+a*a, nb+b*b
			}
			worst = math.Min(worst, dot/math.Sqrt(na*nb))
		}
		t.Logf("GPU-PARITY %s worst-cosine %.7f", g.name, worst)
		if worst < 0.9999 {
			t.Errorf("%s: CUDA vs CPU cosine %.6f < 0.9999", g.name, worst)
		}
	}
}

// BenchmarkGPU measures patches/s per model, provider and batch size (1, 8, 32), both
// providers in the same process so the ratio is like for like.
func BenchmarkGPU(b *testing.B) {
	rt := gpuCheck(b)
	for _, g := range gpuModels(b) {
		path := filepath.Join(b.TempDir(), g.name+".onnx")
		if err := g.m.WriteFile(path); err != nil {
			b.Fatal(err)
		}
		for _, prov := range []struct {
			name string
			o    onnxrt.Options
		}{{"cpu", onnxrt.Options{Device: onnxrt.DeviceCPU}}, {"cuda", gpuOptions()}} {
			s, err := rt.Open(path, encoders.InputName, encoders.OutputName, prov.o)
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d", g.name, prov.name, batch), func(b *testing.B) {
					shape, data := randomBatch(batch, g.roi, 5)
					for i := 0; i < 2; i++ { // warm-up: cuDNN algorithm search happens here
						if _, _, err := s.Run(shape, data); err != nil {
							b.Fatal(err)
						}
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, _, err := s.Run(shape, data); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "patches/s")
				})
			}
		}
	}
}
