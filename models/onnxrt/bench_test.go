package onnxrt_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"connectome/internal/encoders"
	"connectome/models/onnxrt"
)

// BenchmarkDemoEncoderCPU measures inference alone (no I/O) for the demo encoders on CPU at
// batch 1 and 8, reported as patches/s. go test -run XXX -bench DemoEncoderCPU ./models/onnxrt
func BenchmarkDemoEncoderCPU(b *testing.B) {
	rt := env.Require(b)
	for _, c := range []struct {
		name string
		roi  int64
		dim  int
	}{{"demo-cnn-48", 48, 128}, {"demo-cnn-64", 64, 256}} {
		m, err := encoders.DemoEncoder(c.name, [5]int64{0, 1, c.roi, c.roi, c.roi}, c.dim, encoders.Seed(c.name))
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), c.name+".onnx")
		if err := m.WriteFile(path); err != nil {
			b.Fatal(err)
		}
		s, err := rt.Open(path, encoders.InputName, encoders.OutputName, onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: 2})
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/batch=%d", c.name, batch), func(b *testing.B) {
				n := int(c.roi * c.roi * c.roi)
				data := make([]float32, batch*n)
				rng := rand.New(rand.NewPCG(1, 2))
				for i := range data {
					data[i] = float32(rng.Float64())
				}
				shape := []int64{int64(batch), 1, c.roi, c.roi, c.roi}
				if _, _, err := s.Run(shape, data); err != nil { // warm-up
					b.Fatal(err)
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
