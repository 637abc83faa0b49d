package knn

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// SearchRows is Search for the query rows [lo, hi) only, against all rows of m: the piece of
// a search that one shard of a sharded run computes. The result has N = hi − lo lists; list q
// belongs to row lo+q, and its Index values are rows of the whole set. K is min(Options.K,
// n−1), as in Search.
//
// The lists equal Search's rows lo..hi−1 exactly, bit for bit: each dot product is one cell
// of the same kernel, which accumulates every cell on its own in the same order (and a·b is
// b·a, FMA's product commutes), scaled by the same two inverse norms; and the lists keep the
// same total order (distance, then index). The work is (hi−lo)·n products instead of Search's
// n²/2 shared by both ends of a pair, so N shards do twice the work of one Search between
// them, in parallel.
func SearchRows(ctx context.Context, m *Matrix, lo, hi int, opt Options) (*Result, error) {
	n := m.Len()
	if lo < 0 || hi > n || lo > hi {
		return nil, fmt.Errorf("knn: query rows [%d, %d) of %d", lo, hi, n)
	}
	k, err := listLength(opt.K, n)
	if err != nil {
		return nil, err
	}
	rows := hi - lo
	res := &Result{N: rows, K: k}
	if k == 0 || rows == 0 {
		res.Closest, res.Farthest = make([]Neighbor, rows*k), make([]Neighbor, rows*k)
		return res, nil
	}
	inv, err := m.invNorms()
	if err != nil {
		return nil, err
	}
	stride := m.stride()
	bs := blockSize(opt.BlockSize, stride)
	workers := workerCount(opt.Workers)
	// Work unit: a block of query rows, aligned at a multiple of 4 as Search's tiles are,
	// against every block of rows; small enough that every worker gets one.
	first := lo &^ 3
	qb := min(bs, max(4, ((hi-first+workers-1)/workers+3)&^3))
	units := (hi - first + qb - 1) / qb
	workers = max(1, min(workers, units))
	t := newTopk(rows, k) // each list is written by the one worker that owns its row
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			queries, block := make([]float64, qb*stride), make([]float64, bs*stride)
			var tile [16]float64
			for ctx.Err() == nil {
				u := int(next.Add(1) - 1)
				if u >= units {
					return
				}
				a0 := first + u*qb
				a1 := min(a0+qb, hi)
				m.load(queries, stride, a0, a1)
				for b0 := 0; b0 < n; b0 += bs {
					b1 := min(b0+bs, n)
					m.load(block, stride, b0, b1)
					for a := a0; a < a1; a += 4 {
						for b := b0; b < b1; b += 4 {
							dot4x4(queries[(a-a0)*stride:], block[(b-b0)*stride:], stride, tile[:], 4)
							t.offerTile(&tile, inv, a, b, lo, hi, n)
						}
					}
				}
				d := done.Add(1)
				if opt.Progress != nil {
					opt.Progress(int(d), units)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Closest, res.Farthest = merge([]*topk{t}, rows, k)
	return res, nil
}

// offerTile offers the products of rows a..a+3 (those within [lo, hi): t's list q is row
// lo+q) with rows b..b+3 (those below n, other than the query itself) to the queries' lists.
func (t *topk) offerTile(tile *[16]float64, inv []float64, a, b, lo, hi, n int) {
	for r := range 4 {
		i := a + r
		if i < lo || i >= hi {
			continue
		}
		q := i - lo
		for c := range 4 {
			j := b + c
			if j >= n || j == i {
				continue
			}
			// Search's value for the pair, inv[min]·inv[max]: the product commutes
			d := 1 - tile[r*4+c]*(inv[i]*inv[j])
			if d <= t.cThr[q] {
				t.pushClosest(q, d, int32(j))
			}
			if d >= t.fThr[q] {
				t.pushFarthest(q, d, int32(j))
			}
		}
	}
}
