package knn

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// SearchRows is Search for the query rows [lo, hi) only, against all n rows: the piece of a
// search that one shard of a sharded run computes. The result has N = hi − lo lists; list q
// belongs to row lo+q, and its Index values are rows of the whole set. K is min(Options.K,
// n−1), as in Search.
//
// The lists equal Search's rows lo..hi−1 exactly, bit for bit: every distance is computed by
// the same 4×4 tile of the same kernel call that Search uses for the pair (the tile of the
// lower row first, as Search only computes tiles on and above the diagonal), and the lists
// keep the same total order (distance, then index). The work is (hi−lo)·n products instead of
// Search's n²/2 shared by both ends of a pair, so N shards do twice the work of one Search
// between them, in parallel.
func SearchRows(ctx context.Context, data []float32, n, dim, lo, hi int, opt Options) (*Result, error) {
	if n < 0 || dim <= 0 || len(data) != n*dim {
		return nil, fmt.Errorf("knn: %d values for %d×%d", len(data), n, dim)
	}
	if lo < 0 || hi > n || lo > hi {
		return nil, fmt.Errorf("knn: query rows [%d, %d) of %d", lo, hi, n)
	}
	k := opt.K
	if k == 0 {
		k = 5
	}
	if k < 0 {
		return nil, fmt.Errorf("knn: k = %d", k)
	}
	k = min(k, max(n-1, 0))
	rows := hi - lo
	res := &Result{N: rows, K: k}
	if k == 0 || rows == 0 {
		res.Closest, res.Farthest = make([]Neighbor, rows*k), make([]Neighbor, rows*k)
		return res, nil
	}
	m, err := newMatrix(data, n, dim)
	if err != nil {
		return nil, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Work unit: one aligned tile of 4 query rows against every column tile. Tiles align at
	// multiples of 4 as Search's do; rows of a tile outside [lo, hi) are skipped.
	first := lo &^ 3
	ntiles := (hi - first + 3) / 4
	workers = max(1, min(workers, ntiles))
	t := newTopk(rows, k) // each list is written by the one worker that owns its tile
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var tile [16]float64
			for ctx.Err() == nil {
				x := int(next.Add(1) - 1)
				if x >= ntiles {
					return
				}
				a := first + 4*x
				for b := 0; b < n; b += 4 {
					m.rowTile(t, a, b, lo, hi, &tile)
				}
				d := done.Add(1)
				if opt.Progress != nil {
					opt.Progress(int(d), ntiles)
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

// rowTile offers the products of query tile a (rows a..a+3 within [lo, hi)) with column tile
// b to the queries' lists (t's list q is row lo+q). The tile is computed as Search computes it:
// dot4x4(lower tile, upper tile), read transposed when the query tile is the upper one.
func (m *matrix) rowTile(t *topk, a, b, lo, hi int, tile *[16]float64) {
	lower, upper := a, b
	if b < a {
		lower, upper = b, a
	}
	dot4x4(m.v[lower*m.stride:], m.v[upper*m.stride:], m.stride, tile[:], 4)
	for r := range 4 {
		i := a + r
		if i < lo || i >= hi {
			continue
		}
		q := i - lo
		for c := range 4 {
			j := b + c
			if j >= m.n || j == i {
				continue
			}
			// Search's value for the pair: row min(i,j) of its tile times column max(i,j),
			// scaled by inv[min]·inv[max] in that order.
			lo4, hi4 := i, j
			if j < i {
				lo4, hi4 = j, i
			}
			dot := tile[(lo4-lower)*4+(hi4-upper)]
			d := 1 - dot*(m.inv[lo4]*m.inv[hi4])
			if d <= t.cThr[q] {
				t.pushClosest(q, d, int32(j))
			}
			if d >= t.fThr[q] {
				t.pushFarthest(q, d, int32(j))
			}
		}
	}
}
