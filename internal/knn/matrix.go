package knn

import "math"

// chunkBytes is the size of one chunk of a Matrix: small enough that the last, partly used
// chunk wastes little, large enough that the chunk list stays short.
const chunkBytes = 1 << 20

// Matrix holds vectors of one dimension as float32 rows, in chunks of about 1 MiB. It grows
// without copying what it holds (a growing slice briefly needs twice its size) and is the only
// copy of the vectors a search needs: Search converts a block of rows at a time to float64.
type Matrix struct {
	dim, perChunk, n int
	chunks           [][]float32
}

// NewMatrix returns an empty matrix of rows of dim values (dim ≥ 1).
func NewMatrix(dim int) *Matrix {
	dim = max(dim, 1)
	return &Matrix{dim: dim, perChunk: max(1, chunkBytes/(4*dim))}
}

// Len is the number of rows.
func (m *Matrix) Len() int { return m.n }

// Row returns row i (it aliases the matrix).
func (m *Matrix) Row(i int) []float32 {
	o := (i % m.perChunk) * m.dim
	return m.chunks[i/m.perChunk][o : o+m.dim : o+m.dim]
}

// Grow adds a row at the end and returns it for the caller to fill: its values are
// unspecified (a row dropped by Truncate is reused as it is).
func (m *Matrix) Grow() []float32 {
	if m.n == len(m.chunks)*m.perChunk {
		m.chunks = append(m.chunks, make([]float32, m.perChunk*m.dim))
	}
	m.n++
	return m.Row(m.n - 1)
}

// Truncate drops the rows from n on (0 ≤ n ≤ Len), freeing the chunks no row uses any more.
func (m *Matrix) Truncate(n int) {
	m.n = n
	used := (n + m.perChunk - 1) / m.perChunk
	clear(m.chunks[used:])
	m.chunks = m.chunks[:used]
}

// Permute reorders the rows in place so that row x becomes the old row order[x]; order must be
// a permutation of 0..Len−1. It follows the permutation's cycles with one spare row, so it
// needs no second copy of the matrix.
func (m *Matrix) Permute(order []int) {
	done := make([]bool, m.n)
	tmp := make([]float32, m.dim)
	for start := range m.n {
		if done[start] || order[start] == start {
			done[start] = true
			continue
		}
		copy(tmp, m.Row(start))
		x := start
		for {
			done[x] = true
			src := order[x]
			if src == start {
				copy(m.Row(x), tmp)
				break
			}
			copy(m.Row(x), m.Row(src))
			x = src
		}
	}
}

// stride is the length of a row once converted to float64: padded with zeros to a multiple
// of 8 values, which the kernels step by.
func (m *Matrix) stride() int { return (m.dim + 7) &^ 7 }

// load writes rows [r0, r1) as float64 into dst, stride values apart, and zero rows after
// them up to a multiple of 4 rows (the kernels take rows 4 at a time). dst must be zero in
// the padding columns of every row (a fresh buffer is; load never writes them).
func (m *Matrix) load(dst []float64, stride, r0, r1 int) {
	for i := r0; i < r1; i++ {
		src := m.Row(i)
		d := dst[(i-r0)*stride:][:len(src)]
		for j, x := range src {
			d[j] = float64(x)
		}
	}
	pad := (r1 - r0 + 3) &^ 3
	clear(dst[(r1-r0)*stride : pad*stride])
}

// invNorms returns 1/‖row‖ for every row, the norms summed in float64 in row order, or a
// BadVectorError for the first row whose norm is zero or not finite.
func (m *Matrix) invNorms() ([]float64, error) {
	inv := make([]float64, m.n)
	for i := range m.n {
		var ss float64
		for _, x := range m.Row(i) {
			f := float64(x)
			ss += f * f
		}
		nrm := math.Sqrt(ss)
		if nrm == 0 || math.IsInf(nrm, 0) || math.IsNaN(nrm) {
			return nil, &BadVectorError{Row: i}
		}
		inv[i] = 1 / nrm
	}
	return inv, nil
}
