package knn

import (
	"context"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// matrixOf copies n rows of dim values from data into a Matrix.
func matrixOf(data []float32, n, dim int) *Matrix {
	return matrixChunked(data, n, dim, 0)
}

// matrixChunked is matrixOf with perChunk rows per chunk (0: the default), to put chunk
// boundaries inside blocks and tiles.
func matrixChunked(data []float32, n, dim, perChunk int) *Matrix {
	m := NewMatrix(dim)
	if perChunk > 0 {
		m.perChunk = perChunk
	}
	for i := range n {
		copy(m.Grow(), data[i*dim:(i+1)*dim])
	}
	return m
}

func TestMatrixGrowTruncatePermute(t *testing.T) {
	const n, dim = 23, 3
	rng := rand.New(rand.NewPCG(7, 8))
	data := randomData(rng, n, dim, 0)
	m := matrixChunked(data, n, dim, 4)
	if m.Len() != n || len(m.Row(0)) != dim || len(m.chunks) != 6 {
		t.Fatalf("len %d dim %d chunks %d", m.Len(), len(m.Row(0)), len(m.chunks))
	}
	m.Truncate(8)
	if m.Len() != 8 || len(m.chunks) != 2 {
		t.Fatalf("after Truncate(8): len %d chunks %d", m.Len(), len(m.chunks))
	}
	for i := 8; i < n; i++ {
		copy(m.Grow(), data[i*dim:(i+1)*dim])
	}
	for _, order := range [][]int{rng.Perm(n), identity(n), reversed(n)} {
		m := matrixChunked(data, n, dim, 4)
		m.Permute(order)
		for x, src := range order {
			if !slices.Equal(m.Row(x), data[src*dim:(src+1)*dim]) {
				t.Fatalf("order %v: row %d = %v, want old row %d %v", order, x, m.Row(x), src, data[src*dim:(src+1)*dim])
			}
		}
	}
}

func identity(n int) []int {
	o := make([]int, n)
	for i := range o {
		o[i] = i
	}
	return o
}

func reversed(n int) []int {
	o := identity(n)
	slices.Reverse(o)
	return o
}

// TestSearchBitwise is the exactness contract of the blocked, chunked search: every listed
// distance is, bit for bit, 1 − dot·(1/‖a‖·1/‖b‖) with dot the kernel's product of the two rows
// alone, and the lists are the first k of all pairs in (distance, index) order — whatever the
// block size, chunk size, worker count, and for SearchRows whatever the split. So no change of
// blocking or memory layout can change a list.
func TestSearchBitwise(t *testing.T) {
	for _, levels := range []int{0, 3} {
		const n, dim, k = 150, 37, 6
		data := randomData(rand.New(rand.NewPCG(uint64(levels), 9)), n, dim, levels)
		for _, kernel := range kernels() {
			setKernel(t, kernel)
			wantC, wantF := kernelSpec(matrixOf(data, n, dim), k)
			for _, c := range []struct{ block, perChunk, workers int }{{4, 1, 3}, {16, 7, 2}, {0, 0, 1}, {64, 5, 2}} {
				m := matrixChunked(data, n, dim, c.perChunk)
				res, err := Search(context.Background(), m, Options{K: k, BlockSize: c.block, Workers: c.workers})
				if err != nil {
					t.Fatal(err)
				}
				for q := range n {
					if !slices.Equal(res.ClosestOf(q), wantC[q]) || !slices.Equal(res.FarthestOf(q), wantF[q]) {
						t.Fatalf("levels %d %s %+v node %d:\n closest  %v\n want     %v\n farthest %v\n want     %v",
							levels, kernel, c, q, res.ClosestOf(q), wantC[q], res.FarthestOf(q), wantF[q])
					}
				}
				for _, cut := range [][2]int{{0, n}, {3, 77}, {77, n}} {
					rows, err := SearchRows(context.Background(), m, cut[0], cut[1], Options{K: k, BlockSize: c.block, Workers: c.workers})
					if err != nil {
						t.Fatal(err)
					}
					for q := cut[0]; q < cut[1]; q++ {
						if !slices.Equal(rows.ClosestOf(q-cut[0]), wantC[q]) || !slices.Equal(rows.FarthestOf(q-cut[0]), wantF[q]) {
							t.Fatalf("levels %d %s %+v rows %v node %d differ from the spec", levels, kernel, c, cut, q)
						}
					}
				}
			}
		}
	}
}

// kernelSpec computes every pair's distance on its own with the kernel (the pair's two rows as
// float64, each alone in its 4-row tile) and sorts them: the specification TestSearchBitwise
// holds the search to.
func kernelSpec(m *Matrix, k int) (closest, farthest [][]Neighbor) {
	n, stride := m.Len(), m.stride()
	inv, err := m.invNorms()
	if err != nil {
		panic(err)
	}
	a, b := make([]float64, 4*stride), make([]float64, 4*stride)
	var tile [16]float64
	for q := range n {
		m.load(a, stride, q, q+1)
		var all []Neighbor
		for j := range n {
			if j == q {
				continue
			}
			m.load(b, stride, j, j+1)
			dot4x4(a, b, stride, tile[:], 4)
			all = append(all, Neighbor{int32(j), 1 - tile[0]*(inv[min(q, j)]*inv[max(q, j)])})
		}
		sort.Slice(all, func(x, y int) bool {
			return all[x].Distance < all[y].Distance || all[x].Distance == all[y].Distance && all[x].Index < all[y].Index
		})
		closest = append(closest, slices.Clone(all[:k]))
		sort.Slice(all, func(x, y int) bool {
			return all[x].Distance > all[y].Distance || all[x].Distance == all[y].Distance && all[x].Index < all[y].Index
		})
		farthest = append(farthest, slices.Clone(all[:k]))
	}
	return closest, farthest
}
