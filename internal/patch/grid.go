package patch

import (
	"errors"
	"fmt"
	"math"
)

// Grid is the full resampled grid of Spacingd for one pixdim (spec §2.4): the output affine
// B, its shape m, and the map X from output index to input index.
type Grid struct {
	N      [3]int // input shape n
	M      [3]int // output shape m
	Pixdim [3]float64
	A      mat4 // input RAS affine (as read)
	Aseed  mat4 // input RAS affine after the first Orientationd("LPS"); used for the seed
	B      mat4
	X      mat4 // solve(A, B)
	// sep[b] is the output axis that input axis b depends on when X is axis-aligned, else −1.
	sep [3]int
	// scale[a] = m_a/(m_a−1) and the input factors (n_b−1), n_b, kept as float64 for the quirk map.
	mf, nf [3]float64
}

// NewGrid computes Spacingd's output grid for geometry g (already NIfTI-quantised) and pixdim
// p (RAS axes).
func NewGrid(g Geometry, p [3]float64) (*Grid, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	for a := 0; a < 3; a++ {
		if !(p[a] > 0) {
			return nil, fmt.Errorf("pixdim %v: want positive values", p)
		}
	}
	gr := &Grid{N: g.Size, Pixdim: p}
	gr.A = g.rasAffine()
	gr.Aseed = gr.A
	if r, ok := lpsReoriented(gr.A, g.Size); ok {
		gr.Aseed = r
	}
	b := identity()
	for a := 0; a < 3; a++ {
		b[a][a] = p[a]
	}
	q, w, err := gr.corners(b)
	if err != nil {
		return nil, err
	}
	if gr.M, err = outputShape(q); err != nil {
		return nil, err
	}
	origin, ok := cornerOrigin(q, w)
	if !ok {
		origin = gr.centredOrigin(b)
	}
	for r := 0; r < 3; r++ {
		b[r][3] = origin[r]
	}
	gr.B = b
	if gr.X, err = solve(gr.A, b); err != nil {
		return nil, fmt.Errorf("output grid: %w", err)
	}
	gr.sep = separableAxes(gr.X)
	for a := 0; a < 3; a++ {
		gr.mf[a] = float64(gr.M[a])
		gr.nf[a] = float64(gr.N[a])
	}
	return gr, nil
}

// corners returns the 8 corners of the input in output-index units, q = solve(B, A)·corner,
// and in world (RAS) coordinates, w = A·corner, for the output affine b without translation.
// Corner ci is in numpy meshgrid(indexing='ij').reshape order: k fastest.
func (gr *Grid) corners(b mat4) (q, w [8][3]float64, err error) {
	ba, err := solve(b, gr.A)
	if err != nil {
		return q, w, fmt.Errorf("output grid: %w", err)
	}
	for ci := 0; ci < 8; ci++ {
		c := [4]float64{0, 0, 0, 1}
		if ci&4 != 0 {
			c[0] = float64(gr.N[0] - 1)
		}
		if ci&2 != 0 {
			c[1] = float64(gr.N[1] - 1)
		}
		if ci&1 != 0 {
			c[2] = float64(gr.N[2] - 1)
		}
		for r := 0; r < 3; r++ {
			var acc, accw float64
			for k := 0; k < 4; k++ {
				acc += float64(ba[r][k] * c[k])
				accw += float64(gr.A[r][k] * c[k])
			}
			q[ci][r], w[ci][r] = acc, accw
		}
	}
	return q, w, nil
}

// outputShape is the output shape m: the extent of the corners q in output-index units, plus one.
func outputShape(q [8][3]float64) ([3]int, error) {
	var m [3]int
	for r := 0; r < 3; r++ {
		lo, hi := q[0][r], q[0][r]
		for ci := 1; ci < 8; ci++ {
			lo, hi = math.Min(lo, q[ci][r]), math.Max(hi, q[ci][r])
		}
		m[r] = int(math.RoundToEven(float64(hi-lo) + 1))
		if m[r] < 1 {
			return m, fmt.Errorf("output grid: shape %v", m)
		}
	}
	return m, nil
}

// cornerOrigin is the output origin when one input corner is the minimum on every axis (an
// axis-aligned input): that corner's world position. ok is false for an oblique input.
func cornerOrigin(q, w [8][3]float64) (origin [3]float64, ok bool) {
	for ci := 0; ci < 8; ci++ {
		if isMinCorner(q, ci) {
			return w[ci], true
		}
	}
	return origin, false
}

// isMinCorner reports whether corner ci is the minimum of the corners q on every axis.
func isMinCorner(q [8][3]float64, ci int) bool {
	for r := 0; r < 3; r++ {
		mn := math.Inf(1)
		for cj := 0; cj < 8; cj++ {
			mn = math.Min(mn, q[cj][r]-q[ci][r])
		}
		// np.allclose(min, 0, rtol=1e-3): |min| <= 1e-8
		if !(math.Abs(mn) <= 1e-8) {
			return false
		}
	}
	return true
}

// centredOrigin is the oblique case's output origin: the output centre on the input centre
// (uses n/2 and m/2, spec §2.4.3).
func (gr *Grid) centredOrigin(b mat4) [3]float64 {
	var origin [3]float64
	for r := 0; r < 3; r++ {
		var an, bm float64
		for k := 0; k < 3; k++ {
			an += float64(gr.A[r][k] * (float64(gr.N[k]) / 2))
			bm += float64(b[r][k] * (float64(gr.M[k]) / 2))
		}
		origin[r] = (an + gr.A[r][3]) - bm
	}
	return origin
}

// separableAxes returns, per input axis, the one output axis it depends on in the index map
// x, or all −1 when some input axis depends on several (an oblique grid).
func separableAxes(x mat4) [3]int {
	var sep [3]int
	for bAx := 0; bAx < 3; bAx++ {
		sep[bAx] = -1
		nz := 0
		for a := 0; a < 3; a++ {
			if x[bAx][a] != 0 {
				nz++
				sep[bAx] = a
			}
		}
		if nz != 1 {
			return [3]int{-1, -1, -1}
		}
	}
	return sep
}

// separable reports whether each input index depends on one output index only (axis-aligned
// geometry), which allows per-axis tables.
func (gr *Grid) separable() bool { return gr.sep[0] >= 0 }

// d is the quirk's output coordinate for index o along output axis a (spec §2.4.5).
func (gr *Grid) d(a, o int) float64 {
	if gr.M[a] <= 1 {
		return 0
	}
	return float64(float64(o)*gr.mf[a])/(gr.mf[a]-1) - 0.5
}

// inIndex maps t (nominal input index) to the sampled continuous index along input axis b.
func (gr *Grid) inIndex(b int, t float64) float64 {
	if gr.N[b] <= 1 {
		return 0
	}
	return float64((t+0.5)*(gr.nf[b]-1)) / gr.nf[b]
}

// SampleIndex is the continuous input index (i, j, k) that output voxel o samples.
func (gr *Grid) SampleIndex(o [3]int) [3]float64 {
	d := [3]float64{gr.d(0, o[0]), gr.d(1, o[1]), gr.d(2, o[2])}
	var ix [3]float64
	for b := 0; b < 3; b++ {
		var t float64
		for k := 0; k < 3; k++ {
			t += float64(gr.X[b][k] * d[k])
		}
		ix[b] = gr.inIndex(b, t+gr.X[b][3])
	}
	return ix
}

// axisIndex is SampleIndex's component b for a separable grid, from the single output
// coordinate it depends on. The zero terms of the full sum do not change the value.
func (gr *Grid) axisIndex(b, o int) float64 {
	a := gr.sep[b]
	t := float64(gr.X[b][a] * gr.d(a, o))
	return gr.inIndex(b, t+gr.X[b][3])
}

// ErrSeedOutside is returned when the crop window around the seed is empty on some axis: the
// seed lies outside the resampled volume (the reference would fail an assertion).
var ErrSeedOutside = errors.New("seed outside the volume")

// SeedIndex is fmcib's seed voxel c = int(inv(A·X)·(−x, −y, z, 1)) on this grid, with the
// bit-exact operation sequence of spec §2.5.
func (gr *Grid) SeedIndex(seedLPS [3]float64) ([3]int, error) {
	x, err := solve(gr.Aseed, gr.B)
	if err != nil {
		return [3]int{}, err
	}
	f := mul(gr.Aseed, x)
	fi, err := solve(f, identity())
	if err != nil {
		return [3]int{}, err
	}
	s := [4]float64{-seedLPS[0], -seedLPS[1], seedLPS[2], 1}
	var c [3]int
	for a := 0; a < 3; a++ {
		var acc float64
		for k := 0; k < 4; k++ {
			acc += float64(fi[a][k] * s[k])
		}
		if math.IsNaN(acc) || math.Abs(acc) > 1e9 {
			return c, fmt.Errorf("seed %v: index %g: %w", seedLPS, acc, ErrSeedOutside)
		}
		c[a] = int(acc) // truncation toward zero, as Python int()
	}
	return c, nil
}

// Window is fmcib's crop window [lo, hi) around c for roi, clamped with the full m (spec §2.5).
func (gr *Grid) Window(c [3]int, roi [3]int) (lo, hi [3]int, err error) {
	for a := 0; a < 3; a++ {
		lo[a] = max(c[a]-roi[a]/2, 0)
		hi[a] = min(c[a]+roi[a]/2, gr.M[a])
		if lo[a] >= hi[a] {
			return lo, hi, fmt.Errorf("seed index %v, grid %v, axis %d: empty crop window: %w", c, gr.M, a, ErrSeedOutside)
		}
	}
	return lo, hi, nil
}

// InputBox is the box of input voxels [lo, hi] (inclusive, clipped to the volume) that the
// output window [olo, ohi) reads (spec §4.3). empty is true when it reads no voxel at all.
func (gr *Grid) InputBox(olo, ohi [3]int) (lo, hi [3]int, empty bool) {
	mn := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	mx := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for ci := 0; ci < 8; ci++ {
		var o [3]int
		for a := 0; a < 3; a++ {
			o[a] = olo[a]
			if ci>>a&1 != 0 {
				o[a] = ohi[a] - 1
			}
		}
		ix := gr.SampleIndex(o)
		for b := 0; b < 3; b++ {
			mn[b] = math.Min(mn[b], ix[b])
			mx[b] = math.Max(mx[b], ix[b])
		}
	}
	margin := 0
	if !gr.separable() {
		// a general affine sum may round past a corner's value by an ulp
		margin = 1
	}
	for b := 0; b < 3; b++ {
		lo[b] = max(int(math.Floor(mn[b]))-margin, 0)
		hi[b] = min(int(math.Floor(mx[b]))+1+margin, gr.N[b]-1)
		if lo[b] > hi[b] {
			empty = true
		}
	}
	return lo, hi, empty
}
