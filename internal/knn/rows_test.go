package knn

import (
	"context"
	"math/rand/v2"
	"testing"
)

// TestSearchRowsEqualsSearch: the shards' row ranges, searched apart, give Search's lists bit
// for bit, for any split (unaligned bounds included), with ties (levels) and without.
func TestSearchRowsEqualsSearch(t *testing.T) {
	for _, tc := range []struct {
		n, dim, k, levels, block int
		cuts                     []int
	}{
		{n: 37, dim: 5, k: 5, levels: 0, block: 8, cuts: []int{0, 9, 10, 23, 37}},
		{n: 64, dim: 16, k: 3, levels: 3, block: 0, cuts: []int{0, 1, 2, 33, 64}},
		{n: 101, dim: 9, k: 7, levels: 5, block: 12, cuts: []int{0, 25, 50, 75, 101}},
		{n: 4, dim: 3, k: 10, levels: 0, block: 0, cuts: []int{0, 3, 4}},
	} {
		rng := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.dim)))
		data := randomData(rng, tc.n, tc.dim, tc.levels)
		want, err := Search(context.Background(), matrixOf(data, tc.n, tc.dim), Options{K: tc.k, BlockSize: tc.block})
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s+1 < len(tc.cuts); s++ {
			lo, hi := tc.cuts[s], tc.cuts[s+1]
			got, err := SearchRows(context.Background(), matrixOf(data, tc.n, tc.dim), lo, hi, Options{K: tc.k, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			if got.N != hi-lo || got.K != want.K {
				t.Fatalf("n=%d rows [%d,%d): N=%d K=%d, want %d %d", tc.n, lo, hi, got.N, got.K, hi-lo, want.K)
			}
			for q := lo; q < hi; q++ {
				for x, nb := range got.ClosestOf(q - lo) {
					if w := want.ClosestOf(q)[x]; nb != w {
						t.Fatalf("n=%d row %d closest[%d] = %+v, Search %+v", tc.n, q, x, nb, w)
					}
				}
				for x, nb := range got.FarthestOf(q - lo) {
					if w := want.FarthestOf(q)[x]; nb != w {
						t.Fatalf("n=%d row %d farthest[%d] = %+v, Search %+v", tc.n, q, x, nb, w)
					}
				}
			}
		}
	}
}

func TestSearchRowsBadRange(t *testing.T) {
	data := make([]float32, 8)
	for i := range data {
		data[i] = float32(i + 1)
	}
	for _, r := range [][2]int{{-1, 2}, {3, 2}, {0, 5}} {
		if _, err := SearchRows(context.Background(), matrixOf(data, 4, 2), r[0], r[1], Options{}); err == nil {
			t.Errorf("rows %v: no error", r)
		}
	}
}
