package knn

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectome/internal/patch"
)

// The benchmark driver (scripts/bench/similarity_numpy.py) runs the compiled test binary with
// these flags to time one search on a given matrix, in a process of its own so that its peak
// memory can be measured.
var (
	driverIn  = flag.String("knn.in", "", "float32 (N, D) .npy file to search (driver mode)")
	driverOut = flag.String("knn.out", "", "write the closest then farthest indices here, float32 (N, 2k) .npy")
	driverK   = flag.Int("knn.k", 5, "k for driver mode")
)

func TestDriver(t *testing.T) {
	if *driverIn == "" {
		t.Skip("driver mode only (-knn.in)")
	}
	f, err := os.Open(*driverIn)
	if err != nil {
		t.Fatal(err)
	}
	shape, data, err := patch.ReadNPY(f)
	f.Close()
	if err != nil || len(shape) != 2 {
		t.Fatalf("read %s: shape %v: %v", *driverIn, shape, err)
	}
	m := matrixOf(data, shape[0], shape[1])
	data = nil // the matrix is the search's only copy, as in the stage
	start := time.Now()
	res, err := Search(context.Background(), m, Options{K: *driverK})
	if err != nil {
		t.Fatal(err)
	}
	sec := time.Since(start).Seconds()
	line, _ := json.Marshal(map[string]any{"seconds": sec, "n": shape[0], "dim": shape[1], "avx512": useAVX512, "avx2": useAVX2, "peak_mib": peakMiB()})
	os.Stdout.Write(append([]byte("KNN_RESULT "), append(line, '\n')...))
	if *driverOut != "" {
		k := res.K
		out := make([]float32, 0, res.N*2*k)
		for q := range res.N {
			for _, nb := range res.ClosestOf(q) {
				out = append(out, float32(nb.Index))
			}
			for _, nb := range res.FarthestOf(q) {
				out = append(out, float32(nb.Index))
			}
		}
		w, err := os.Create(*driverOut)
		if err != nil {
			t.Fatal(err)
		}
		if err := patch.WriteNPY(w, []int{res.N, 2 * k}, out); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// peakMiB is this process's peak resident memory (VmHWM), or −1 where /proc has none. It is
// read here rather than from the parent's wait4, whose ru_maxrss keeps the parent's own peak
// across fork and exec.
func peakMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return -1
}
