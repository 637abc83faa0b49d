// Package knn finds, for every vector of a set, its k closest and k farthest other vectors by
// cosine distance d = 1 − cos, exactly (brute force) and without an N×N matrix: the float32
// vectors are held once (Matrix), blocks of the (symmetric) product are computed tile by tile
// from float64 copies of the two blocks and streamed through bounded per-node top-k lists.
package knn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Neighbor is one entry of a node's list: the index of the match and the cosine distance.
type Neighbor struct {
	Index    int32
	Distance float64
}

// Options tune a search. The zero value means k = 5, automatic block size, all CPUs.
type Options struct {
	// K is the list length per node and kind (at most N−1 entries are returned).
	K int
	// BlockSize is the number of rows per block of the blocked product (rounded up to a
	// multiple of 4); 0 picks one so that a block stays in a core's L2 cache.
	BlockSize int
	// Workers is the number of goroutines; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called (from any goroutine) with the fraction of work done.
	Progress func(done, total int)
}

// Result holds, for node q, Closest[q*K:(q+1)*K] sorted by (distance ascending, index
// ascending) and Farthest[q*K:(q+1)*K] sorted by (distance descending, index ascending).
// K here is min(Options.K, N−1).
type Result struct {
	N, K     int
	Closest  []Neighbor
	Farthest []Neighbor
}

// ClosestOf returns node q's closest list.
func (r *Result) ClosestOf(q int) []Neighbor { return r.Closest[q*r.K : (q+1)*r.K] }

// FarthestOf returns node q's farthest list.
func (r *Result) FarthestOf(q int) []Neighbor { return r.Farthest[q*r.K : (q+1)*r.K] }

// ErrBadVector reports a vector with zero norm or a non-finite value.
var ErrBadVector = errors.New("zero-norm or non-finite vector")

// BadVectorError names the offending row.
type BadVectorError struct{ Row int }

func (e *BadVectorError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, ErrBadVector) }
func (e *BadVectorError) Unwrap() error { return ErrBadVector }

// Search finds the closest and farthest lists of the rows of m. Ties in distance are broken
// by the lower index, so callers that order the rows by id get ties broken by id. Every row
// must have a finite, non-zero norm.
//
// Dot products are accumulated in float64 from the float32 inputs (whose products are exact
// in float64), and cos = dot · (1/‖a‖ · 1/‖b‖), so the distances are float64 computations of
// the original vectors, not of float32-rounded normalised copies. Each worker converts the
// two blocks of rows it multiplies to float64 (the block pair's work is a block's conversion
// times the block size), so the search holds no float64 copy of the matrix.
func Search(ctx context.Context, m *Matrix, opt Options) (*Result, error) {
	n := m.Len()
	k, err := listLength(opt.K, n)
	if err != nil {
		return nil, err
	}
	res := &Result{N: n, K: k}
	if k == 0 {
		return res, nil
	}
	inv, err := m.invNorms()
	if err != nil {
		return nil, err
	}
	stride := m.stride()
	bs := blockSize(opt.BlockSize, stride)
	nb := (n + bs - 1) / bs
	type pair struct{ i, j int }
	pairs := make([]pair, 0, nb*(nb+1)/2)
	for i := range nb {
		for j := i; j < nb; j++ {
			pairs = append(pairs, pair{i, j})
		}
	}
	workers := min(workerCount(opt.Workers), len(pairs))
	lists := make([]*topk, workers)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		lists[w] = newTopk(n, k)
		wg.Go(func() {
			t := lists[w]
			blockI, blockJ := make([]float64, bs*stride), make([]float64, bs*stride)
			strip := make([]float64, 4*bs)
			loaded := -1 // the block in blockI: consecutive pairs mostly share it
			for ctx.Err() == nil {
				p := int(next.Add(1) - 1)
				if p >= len(pairs) {
					return
				}
				i0, i1 := pairs[p].i*bs, min((pairs[p].i+1)*bs, n)
				j0, j1 := pairs[p].j*bs, min((pairs[p].j+1)*bs, n)
				if pairs[p].i != loaded {
					m.load(blockI, stride, i0, i1)
					loaded = pairs[p].i
				}
				bj := blockI
				if j0 != i0 {
					m.load(blockJ, stride, j0, j1)
					bj = blockJ
				}
				blockPair(t, inv, blockI, bj, stride, i0, i1, j0, j1, strip)
				d := done.Add(1)
				if opt.Progress != nil {
					opt.Progress(int(d), len(pairs))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Closest, res.Farthest = merge(lists, n, k)
	return res, nil
}

// listLength is the list length for k asked (0 means 5) among n rows: at most n−1.
func listLength(k, n int) (int, error) {
	if k == 0 {
		k = 5
	}
	if k < 0 {
		return 0, fmt.Errorf("knn: k = %d", k)
	}
	return min(k, max(n-1, 0)), nil
}

// blockSize is the rows per block (a multiple of 4): asked, or so that a block of float64
// rows of stride values is 1 MiB, which stays in a core's L2 cache while the strips of the
// other block stream past (measured: half or a quarter of that is no faster on a 512 KiB L2).
func blockSize(asked, stride int) int {
	bs := asked
	if bs <= 0 {
		bs = (1 << 20) / (stride * 8)
		bs = min(max(bs, 64), 1024)
	}
	return (bs + 3) &^ 3
}

func workerCount(asked int) int {
	if asked > 0 {
		return asked
	}
	return runtime.GOMAXPROCS(0)
}

// blockPair feeds the products of rows [i0,i1) with rows [j0,j1) (j0 ≥ i0) to t, each
// unordered pair once: a distance updates both nodes' lists. bi and bj hold the two blocks'
// rows as float64, stride apart (the same slice when the blocks are the same).
func blockPair(t *topk, inv, bi, bj []float64, stride, i0, i1, j0, j1 int, strip []float64) {
	bs := len(strip) / 4
	diag := i0 == j0
	for a := i0; a < i1; a += 4 {
		jStart := j0
		if diag {
			jStart = a // tiles left of the diagonal hold pairs already seen
		}
		for b := jStart; b < j1; b += 4 {
			dot4x4(bi[(a-i0)*stride:], bj[(b-j0)*stride:], stride, strip[b-jStart:], bs)
		}
		for r := 0; r < 4 && a+r < i1; r++ {
			i := a + r
			lo := jStart
			if diag {
				lo = i + 1
			}
			t.scan(i, inv, strip[r*bs+lo-jStart:r*bs+j1-jStart], lo)
		}
	}
}

// dot4x4 writes the 16 dot products of rows a[0:], a[s:], a[2s:], a[3s:] (each s long) with
// the same rows of b to out[r*os+c].
func dot4x4(a, b []float64, s int, out []float64, os int) {
	switch {
	case useAVX512:
		dot4x4AVX512(&a[0], &b[0], s*8, s, &out[0], os*8)
	case useAVX2:
		dot4x4AVX2(&a[0], &b[0], s*8, s, &out[0], os*8)
	default:
		dot4x4Go(a, b, s, out, os)
	}
}

func dot4x4Go(a, b []float64, s int, out []float64, os int) {
	a0, a1, a2, a3 := a[:s], a[s:2*s], a[2*s:3*s], a[3*s:4*s]
	b0, b1, b2, b3 := b[:s], b[s:2*s], b[2*s:3*s], b[3*s:4*s]
	var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 float64
	for k := range s {
		x0, x1, x2, x3 := a0[k], a1[k], a2[k], a3[k]
		y0, y1, y2, y3 := b0[k], b1[k], b2[k], b3[k]
		c00 += x0 * y0
		c01 += x0 * y1
		c02 += x0 * y2
		c03 += x0 * y3
		c10 += x1 * y0
		c11 += x1 * y1
		c12 += x1 * y2
		c13 += x1 * y3
		c20 += x2 * y0
		c21 += x2 * y1
		c22 += x2 * y2
		c23 += x2 * y3
		c30 += x3 * y0
		c31 += x3 * y1
		c32 += x3 * y2
		c33 += x3 * y3
	}
	out[0], out[1], out[2], out[3] = c00, c01, c02, c03
	out[os], out[os+1], out[os+2], out[os+3] = c10, c11, c12, c13
	out[2*os], out[2*os+1], out[2*os+2], out[2*os+3] = c20, c21, c22, c23
	out[3*os], out[3*os+1], out[3*os+2], out[3*os+3] = c30, c31, c32, c33
}

// topk is one worker's bounded lists: for node q, entries [q*k, q*k+cnt) sorted best first.
// thr is the distance a candidate must reach to be looked at (the worst kept one, or ±Inf
// while the list is not full).
type topk struct {
	k          int
	cD, fD     []float64
	cI, fI     []int32
	cN, fN     []int32
	cThr, fThr []float64
}

func newTopk(n, k int) *topk {
	t := &topk{k: k,
		cD: make([]float64, n*k), fD: make([]float64, n*k),
		cI: make([]int32, n*k), fI: make([]int32, n*k),
		cN: make([]int32, n), fN: make([]int32, n),
		cThr: make([]float64, n), fThr: make([]float64, n),
	}
	for i := range n {
		t.cThr[i] = math.Inf(1)
		t.fThr[i] = math.Inf(-1)
	}
	return t
}

// scan offers the products dots[x] of node i with nodes j = j0+x (all j > i) to both nodes'
// lists.
func (t *topk) scan(i int, inv []float64, dots []float64, j0 int) {
	ii := inv[i]
	cThr, fThr := t.cThr[i], t.fThr[i]
	invj := inv[j0 : j0+len(dots)]
	for x, dot := range dots {
		d := 1 - dot*(ii*invj[x])
		j := j0 + x
		if d <= cThr {
			t.pushClosest(i, d, int32(j))
			cThr = t.cThr[i]
		}
		if d >= fThr {
			t.pushFarthest(i, d, int32(j))
			fThr = t.fThr[i]
		}
		if d <= t.cThr[j] {
			t.pushClosest(j, d, int32(i))
		}
		if d >= t.fThr[j] {
			t.pushFarthest(j, d, int32(i))
		}
	}
}

// pushClosest inserts (d, m) into q's closest list if it beats the worst kept entry.
func (t *topk) pushClosest(q int, d float64, m int32) {
	k := t.k
	D, I := t.cD[q*k:q*k+k], t.cI[q*k:q*k+k]
	n := int(t.cN[q])
	p := n
	for p > 0 && (d < D[p-1] || d == D[p-1] && m < I[p-1]) {
		p--
	}
	if p == k {
		return
	}
	if n < k {
		n++
		t.cN[q] = int32(n)
	}
	copy(D[p+1:n], D[p:n-1])
	copy(I[p+1:n], I[p:n-1])
	D[p], I[p] = d, m
	if n == k {
		t.cThr[q] = D[k-1]
	}
}

// pushFarthest inserts (d, m) into q's farthest list (largest distance first).
func (t *topk) pushFarthest(q int, d float64, m int32) {
	k := t.k
	D, I := t.fD[q*k:q*k+k], t.fI[q*k:q*k+k]
	n := int(t.fN[q])
	p := n
	for p > 0 && (d > D[p-1] || d == D[p-1] && m < I[p-1]) {
		p--
	}
	if p == k {
		return
	}
	if n < k {
		n++
		t.fN[q] = int32(n)
	}
	copy(D[p+1:n], D[p:n-1])
	copy(I[p+1:n], I[p:n-1])
	D[p], I[p] = d, m
	if n == k {
		t.fThr[q] = D[k-1]
	}
}

// merge combines the workers' lists: every pair was offered to exactly one worker, so the
// best k of the union are the answer.
func merge(lists []*topk, n, k int) (closest, farthest []Neighbor) {
	closest = make([]Neighbor, n*k)
	farthest = make([]Neighbor, n*k)
	buf := make([]Neighbor, 0, len(lists)*k)
	for q := range n {
		buf = buf[:0]
		for _, t := range lists {
			for x := range int(t.cN[q]) {
				buf = append(buf, Neighbor{t.cI[q*k+x], t.cD[q*k+x]})
			}
		}
		sort.Slice(buf, func(a, b int) bool {
			return buf[a].Distance < buf[b].Distance || buf[a].Distance == buf[b].Distance && buf[a].Index < buf[b].Index
		})
		copy(closest[q*k:(q+1)*k], buf)
		buf = buf[:0]
		for _, t := range lists {
			for x := range int(t.fN[q]) {
				buf = append(buf, Neighbor{t.fI[q*k+x], t.fD[q*k+x]})
			}
		}
		sort.Slice(buf, func(a, b int) bool {
			return buf[a].Distance > buf[b].Distance || buf[a].Distance == buf[b].Distance && buf[a].Index < buf[b].Index
		})
		copy(farthest[q*k:(q+1)*k], buf)
	}
	return closest, farthest
}
