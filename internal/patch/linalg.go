package patch

import (
	"errors"
	"math"
)

type mat4 [4][4]float64

// mul is a·b with each element accumulated in k order from 0, as a BLAS dgemm kernel does;
// with the sparse affines here the zero terms make the order and any FMA irrelevant.
func mul(a, b mat4) mat4 {
	var c mat4
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			var acc float64
			for k := 0; k < 4; k++ {
				acc += float64(a[i][k] * b[k][j])
			}
			c[i][j] = acc
		}
	}
	return c
}

var errSingular = errors.New("singular matrix")

// solve returns a⁻¹·b the way LAPACK dgesv on OpenBLAS does it: LU with partial pivoting and
// reciprocal pivots, then right-looking triangular solves that multiply by 1/diagonal
// (spec §2.5: this is what makes the seed index bit-exact).
func solve(a, b mat4) (mat4, error) {
	lu := a
	var piv [4]int
	var inv [4]float64
	for j := 0; j < 4; j++ {
		p := j
		for i := j + 1; i < 4; i++ {
			if math.Abs(lu[i][j]) > math.Abs(lu[p][j]) {
				p = i
			}
		}
		piv[j] = p
		if p != j {
			lu[p], lu[j] = lu[j], lu[p]
		}
		if lu[j][j] == 0 {
			return mat4{}, errSingular
		}
		r := 1.0 / lu[j][j]
		inv[j] = r
		for i := j + 1; i < 4; i++ {
			lu[i][j] = float64(lu[i][j] * r)
		}
		for i := j + 1; i < 4; i++ {
			for k := j + 1; k < 4; k++ {
				lu[i][k] -= float64(lu[i][j] * lu[j][k])
			}
		}
	}
	x := b
	for j := 0; j < 4; j++ {
		if piv[j] != j {
			x[j], x[piv[j]] = x[piv[j]], x[j]
		}
	}
	for c := 0; c < 4; c++ {
		// forward: unit lower triangle
		for i := 0; i < 4; i++ {
			for k := i + 1; k < 4; k++ {
				x[k][c] -= float64(x[i][c] * lu[k][i])
			}
		}
		// backward: upper triangle, reciprocal diagonal
		for i := 3; i >= 0; i-- {
			x[i][c] = float64(x[i][c] * inv[i])
			for k := 0; k < i; k++ {
				x[k][c] -= float64(x[i][c] * lu[k][i])
			}
		}
	}
	return x, nil
}

func identity() mat4 {
	var m mat4
	for i := 0; i < 4; i++ {
		m[i][i] = 1
	}
	return m
}
