package knn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// bruteForce is the specification: plain float64 loops over the original vectors, no
// normalised copies, full sort by (distance, index).
func bruteForce(data []float32, n, dim, k int) (closest, farthest [][]Neighbor) {
	norm := func(i int) float64 {
		var s float64
		for _, x := range data[i*dim : (i+1)*dim] {
			s += float64(x) * float64(x)
		}
		return math.Sqrt(s)
	}
	k = max(min(k, n-1), 0)
	for q := range n {
		var all []Neighbor
		for m := range n {
			if m == q {
				continue
			}
			var dot float64
			for j := range dim {
				dot += float64(data[q*dim+j]) * float64(data[m*dim+j])
			}
			// the same float64 formula as Search, so that exact ties (small integer
			// vectors: exact dots) are ties here too; the stage's reference test checks the
			// textbook formula on real data
			all = append(all, Neighbor{int32(m), 1 - dot*((1/norm(q))*(1/norm(m)))})
		}
		sort.Slice(all, func(a, b int) bool {
			return all[a].Distance < all[b].Distance || all[a].Distance == all[b].Distance && all[a].Index < all[b].Index
		})
		closest = append(closest, append([]Neighbor(nil), all[:k]...))
		sort.Slice(all, func(a, b int) bool {
			return all[a].Distance > all[b].Distance || all[a].Distance == all[b].Distance && all[a].Index < all[b].Index
		})
		farthest = append(farthest, append([]Neighbor(nil), all[:k]...))
	}
	return closest, farthest
}

func randomData(rng *rand.Rand, n, dim int, levels int) []float32 {
	data := make([]float32, n*dim)
	for i := range data {
		if levels > 0 {
			// few distinct values: many exact ties and duplicate vectors
			data[i] = float32(rng.IntN(levels) - levels/2)
		} else {
			data[i] = float32(rng.NormFloat64())
		}
	}
	if levels > 0 {
		for i := range n { // no zero vectors
			data[i*dim] = float32(levels)
		}
	}
	return data
}

func compare(t *testing.T, res *Result, data []float32, n, dim, k int, tol float64) {
	t.Helper()
	wantC, wantF := bruteForce(data, n, dim, k)
	if res.K != max(min(k, n-1), 0) {
		t.Fatalf("K = %d, want %d", res.K, max(min(k, n-1), 0))
	}
	for q := range n {
		for name, pair := range map[string][2][]Neighbor{"closest": {res.ClosestOf(q), wantC[q]}, "farthest": {res.FarthestOf(q), wantF[q]}} {
			got, want := pair[0], pair[1]
			for r := range want {
				if got[r].Index != want[r].Index || math.Abs(got[r].Distance-want[r].Distance) > tol {
					t.Fatalf("node %d %s rank %d: got %+v, want %+v\n got  %v\n want %v", q, name, r+1, got[r], want[r], got, want)
				}
			}
		}
	}
}

func TestSearchMatchesBruteForce(t *testing.T) {
	cases := []struct {
		name              string
		n, dim, k, levels int
		block, workers    int
	}{
		{"n1", 1, 8, 5, 0, 0, 0},
		{"n2", 2, 3, 5, 0, 0, 0},
		{"k≥n−1", 6, 5, 10, 0, 0, 0},
		{"k=n−1", 7, 9, 6, 0, 0, 0},
		{"random", 97, 33, 5, 0, 8, 2},
		{"random one block", 50, 16, 3, 0, 0, 1},
		{"ties", 120, 4, 5, 3, 12, 3},
		{"ties wide", 64, 17, 7, 2, 4, 2},
		{"random big", 301, 130, 5, 0, 64, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(c.n), uint64(c.dim)))
			data := randomData(rng, c.n, c.dim, c.levels)
			for _, kernel := range kernels() {
				setKernel(t, kernel)
				res, err := Search(context.Background(), matrixOf(data, c.n, c.dim), Options{K: c.k, BlockSize: c.block, Workers: c.workers})
				if err != nil {
					t.Fatal(err)
				}
				compare(t, res, data, c.n, c.dim, c.k, 1e-12)
			}
		})
	}
}

// kernels lists the dot4x4 kernels this CPU can run.
func kernels() []string {
	k := []string{"go"}
	if useAVX2 {
		k = append(k, "avx2")
	}
	if useAVX512 {
		k = append(k, "avx512")
	}
	return k
}

// setKernel makes dot4x4 use the named kernel until the test ends.
func setKernel(t testing.TB, kernel string) {
	o512, o2 := useAVX512, useAVX2
	useAVX512, useAVX2 = kernel == "avx512", kernel == "avx2"
	t.Cleanup(func() { useAVX512, useAVX2 = o512, o2 })
}

func TestKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	asm := map[string]func(a, b *float64, strideBytes, n int, out *float64, outStrideBytes int){}
	if useAVX512 {
		asm["avx512"] = dot4x4AVX512
	}
	if useAVX2 {
		asm["avx2"] = dot4x4AVX2
	}
	if len(asm) == 0 {
		t.Skip("no assembly kernel for this CPU")
	}
	for _, s := range []int{0, 8, 16, 64, 520} {
		a := make([]float64, 4*s+1)
		b := make([]float64, 4*s+1)
		for i := range a {
			a[i], b[i] = rng.NormFloat64(), rng.NormFloat64()
		}
		want := make([]float64, 4*9)
		dot4x4Go(a, b, s, want, 9)
		for name, kernel := range asm {
			got := make([]float64, 4*9)
			for i := range got {
				got[i] = math.NaN() // cells the kernel must not write stay NaN
			}
			kernel(&a[0], &b[0], s*8, s, &got[0], 9*8)
			for i := range got {
				if i%9 >= 4 {
					if !math.IsNaN(got[i]) {
						t.Fatalf("%s s=%d: wrote out[%d]", name, s, i)
					}
					continue
				}
				if math.Abs(got[i]-want[i]) > 1e-12*float64(s+1) {
					t.Fatalf("%s s=%d: out[%d] = %v, want %v", name, s, i, got[i], want[i])
				}
			}
		}
	}
}

func TestBadVector(t *testing.T) {
	for _, bad := range []float32{0, float32(math.NaN()), float32(math.Inf(1))} {
		data := []float32{1, 2, 3, 4, 5, 6}
		data[2], data[3] = bad, 0
		if bad != 0 {
			data[3] = 1
		}
		_, err := Search(context.Background(), matrixOf(data, 3, 2), Options{K: 1})
		var be *BadVectorError
		if !errors.As(err, &be) || be.Row != 1 {
			t.Errorf("value %v: err = %v, want row 1", bad, err)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := randomData(rand.New(rand.NewPCG(3, 4)), 40, 8, 0)
	if _, err := Search(ctx, matrixOf(data, 40, 8), Options{BlockSize: 8}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
