package knn

import (
	"context"
	"testing"
)

// FuzzSearch checks Search against the brute force on small inputs whose few distinct values
// make ties and duplicate vectors common (the hard part: order by distance, then index).
func FuzzSearch(f *testing.F) {
	f.Add([]byte{7, 3, 2, 1, 0, 2, 1, 1, 0, 2, 2, 2, 1, 0, 0, 1, 2, 1, 2, 1, 0, 1, 1, 2, 0, 1}, uint8(2), uint8(4))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1}, uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, dimB, kB uint8) {
		dim := int(dimB%9) + 1
		k := int(kB%8) + 1
		n := min(len(raw)/dim, 70)
		data := make([]float32, n*dim)
		for i := range data {
			data[i] = float32(int(raw[i]%5) - 2)
		}
		for i := range n { // a zero vector is the caller's error, tested elsewhere
			zero := true
			for _, x := range data[i*dim : (i+1)*dim] {
				zero = zero && x == 0
			}
			if zero {
				data[i*dim] = 1
			}
		}
		for _, kernel := range kernels() {
			setKernel(t, kernel)
			res, err := Search(context.Background(), matrixOf(data, n, dim), Options{K: k, BlockSize: 4 + int(kB%3)*4, Workers: 1 + int(dimB%3)})
			if err != nil {
				t.Fatal(err)
			}
			compare(t, res, data, n, dim, k, 1e-12)
		}
	})
}
