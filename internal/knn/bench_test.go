package knn

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
)

var (
	benchLarge = flag.Bool("knn.large", false, "also benchmark N = 50 000 (tens of seconds per op)")
	benchBlock = flag.Int("knn.block", 0, "BlockSize of the benchmarked searches (0: automatic)")
)

// BenchmarkSearch reports time per full search and the effective rate over the N(N−1)/2
// distinct pairs (2·D flops each).
func BenchmarkSearch(b *testing.B) {
	sizes := []struct{ n, dim int }{{289, 512}, {289, 1024}, {5000, 512}, {5000, 1024}}
	if *benchLarge {
		sizes = append(sizes, struct{ n, dim int }{50000, 512}, struct{ n, dim int }{50000, 1024})
	}
	for _, c := range sizes {
		b.Run(fmt.Sprintf("n=%d/d=%d", c.n, c.dim), func(b *testing.B) {
			m := matrixOf(randomData(rand.New(rand.NewPCG(5, 6)), c.n, c.dim, 0), c.n, c.dim)
			for b.Loop() {
				if _, err := Search(context.Background(), m, Options{K: 5, BlockSize: *benchBlock}); err != nil {
					b.Fatal(err)
				}
			}
			pairs := float64(c.n) * float64(c.n-1) / 2
			b.ReportMetric(pairs*float64(c.dim)*2*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
