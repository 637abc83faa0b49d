// Package patch turns a CT volume and a seed point into the exact input tensor of a model, as
// the MONAI/TumorImagingBench chain would (../shared/docs/preprocessing-spec.md §2), but by
// resampling only the crop window (spec §4). Every float operation that decides a voxel or an
// index follows the reference's order; products are wrapped in float64()/float32() conversions
// so the compiler cannot fuse them into FMA.
package patch

import (
	"fmt"
	"math"
)

// Geometry is an ITK image geometry (spec §2.1): index axes i (columns), j (rows), k (slices).
type Geometry struct {
	Size      [3]int        // n: columns, rows, slices
	Spacing   [3]float64    // mm per index step along i, j, k
	Origin    [3]float64    // LPS mm of voxel (0,0,0)
	Direction [3][3]float64 // LPS; Direction[r][c] is component r of index axis c
}

// Quantised returns g with spacing and origin rounded to float32, as a NIfTI round trip does
// (spec §2.1). Direction cosines are kept.
func (g Geometry) Quantised() Geometry {
	for a := 0; a < 3; a++ {
		g.Spacing[a] = float64(float32(g.Spacing[a]))
		g.Origin[a] = float64(float32(g.Origin[a]))
	}
	return g
}

// Validate checks that g describes a usable volume.
func (g Geometry) Validate() error {
	for a := 0; a < 3; a++ {
		if g.Size[a] <= 0 {
			return fmt.Errorf("geometry: size %v: want positive sizes", g.Size)
		}
		if !(g.Spacing[a] > 0) || math.IsInf(g.Spacing[a], 0) {
			return fmt.Errorf("geometry: spacing %v: want positive finite spacings", g.Spacing)
		}
		if math.IsNaN(g.Origin[a]) || math.IsInf(g.Origin[a], 0) {
			return fmt.Errorf("geometry: origin %v is not finite", g.Origin)
		}
	}
	for c := 0; c < 3; c++ {
		var n2 float64
		for r := 0; r < 3; r++ {
			n2 += g.Direction[r][c] * g.Direction[r][c]
		}
		if math.Abs(n2-1) > 1e-3 {
			return fmt.Errorf("geometry: direction column %d has norm² %g, want 1", c, n2)
		}
	}
	return nil
}

// rasAffine is A of spec §2.1: [D·diag(s) | origin] in LPS, then diag(−1,−1,1,1).
func (g Geometry) rasAffine() mat4 {
	var a mat4
	for r := 0; r < 3; r++ {
		sign := 1.0
		if r < 2 {
			sign = -1
		}
		for c := 0; c < 3; c++ {
			a[r][c] = sign * float64(g.Direction[r][c]*g.Spacing[c])
		}
		a[r][3] = sign * g.Origin[r]
	}
	a[3][3] = 1
	return a
}

// lpsReoriented is the affine after the first Orientationd("LPS") (spec §2.3), for an
// axis-aligned A: each index axis is flipped so that it increases toward L, P or S, and the
// axes are permuted into L, P, S order. ok is false for oblique geometry.
func lpsReoriented(a mat4, n [3]int) (out mat4, ok bool) {
	// world axis of index axis c, and whether index c runs against L/P/S (RAS: −,−,+).
	var corner [4]float64
	var perm [3]int // perm[world] = index axis
	seen := [3]bool{}
	for c := 0; c < 3; c++ {
		w := -1
		for r := 0; r < 3; r++ {
			if a[r][c] != 0 {
				if w >= 0 {
					return out, false
				}
				w = r
			}
		}
		if w < 0 || seen[w] {
			return out, false
		}
		seen[w] = true
		perm[w] = c
		want := 1.0 // LPS in RAS coordinates: L = −R, P = −A, S = +S
		if w < 2 {
			want = -1
		}
		if a[w][c]*want < 0 {
			corner[c] = float64(n[c] - 1)
		}
	}
	corner[3] = 1
	for r := 0; r < 3; r++ {
		c := perm[r]
		out[r][r] = a[r][c]
		if corner[c] != 0 {
			out[r][r] = -a[r][c]
		}
		// translation = A·corner, accumulated in k order (the other terms are zeros).
		var acc float64
		for k := 0; k < 4; k++ {
			acc += float64(a[r][k] * corner[k])
		}
		out[r][3] = acc
	}
	out[3][3] = 1
	return out, true
}
