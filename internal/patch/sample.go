package patch

import (
	"fmt"
	"math"
)

// Volume holds a box of an input volume in memory: voxels [Lo, Lo+Dim) of a volume of shape
// Size, as float32 HU, i fastest (Data[(k·Dim1 + j)·Dim0 + i] for box-relative i, j, k).
// Voxels outside Size are zero (Spacingd's zero padding); voxels inside Size but outside the
// box are not loaded, and sampling one is an error.
type Volume struct {
	Size [3]int
	Lo   [3]int
	Dim  [3]int
	Data []float32
}

// NewVolume allocates a zero box.
func NewVolume(size, lo, dim [3]int) *Volume {
	return &Volume{Size: size, Lo: lo, Dim: dim, Data: make([]float32, dim[0]*dim[1]*dim[2])}
}

// At returns voxel (i, j, k) of the box (box-relative).
func (v *Volume) At(i, j, k int) float32 { return v.Data[(k*v.Dim[1]+j)*v.Dim[0]+i] }

// Set sets voxel (i, j, k) of the box (box-relative).
func (v *Volume) Set(i, j, k int, x float32) { v.Data[(k*v.Dim[1]+j)*v.Dim[0]+i] = x }

// Covers reports whether the box holds every in-volume voxel of [lo, hi] (inclusive).
func (v *Volume) Covers(lo, hi [3]int) bool {
	for b := 0; b < 3; b++ {
		l, h := max(lo[b], 0), min(hi[b], v.Size[b]-1)
		if l > h {
			return true
		}
		if l < v.Lo[b] || h >= v.Lo[b]+v.Dim[b] {
			return false
		}
	}
	return true
}

// Sampled is a resampled box of the output grid: float32 HU, RAS order, C order (last axis
// fastest), plus, per voxel, whether its sample position lies outside the input volume.
type Sampled struct {
	Lo, Hi  [3]int
	Data    []float32
	Outside []bool
}

func (s *Sampled) dims() [3]int {
	return [3]int{s.Hi[0] - s.Lo[0], s.Hi[1] - s.Lo[1], s.Hi[2] - s.Lo[2]}
}

// axisTab is the per-output-coordinate sampling table of one input axis.
type axisTab struct {
	f      []int     // ⌊ix⌋
	w0, w1 []float64 // 1−t, t
	out    []bool    // ix outside [0, n−1]
}

// Sample resamples the output window [lo, hi) of grid gr from vol (trilinear, zero padding,
// float64 accumulation in the reference's corner order, rounded to float32). An axis-aligned
// grid is sampled through per-axis tables, an oblique one voxel by voxel.
func Sample(gr *Grid, vol *Volume, lo, hi [3]int) (*Sampled, error) {
	if !gr.separable() {
		return SamplePerVoxel(gr, vol, lo, hi)
	}
	s, err := newSampled(gr, vol, lo, hi)
	if err != nil {
		return nil, err
	}
	sampleSeparable(gr, vol, s)
	return s, nil
}

// SamplePerVoxel is Sample by the general per-voxel formula on any grid: the reference's own
// order of work. Sample uses it for oblique grids; on axis-aligned grids it is the oracle
// that the per-axis tables are tested against.
func SamplePerVoxel(gr *Grid, vol *Volume, lo, hi [3]int) (*Sampled, error) {
	s, err := newSampled(gr, vol, lo, hi)
	if err != nil {
		return nil, err
	}
	idx := 0
	for u := lo[0]; u < hi[0]; u++ {
		for v := lo[1]; v < hi[1]; v++ {
			for w := lo[2]; w < hi[2]; w++ {
				ix := gr.SampleIndex([3]int{u, v, w})
				s.Data[idx], s.Outside[idx] = trilinear(vol, ix)
				idx++
			}
		}
	}
	return s, nil
}

// newSampled allocates the output window [lo, hi) of gr after checking that vol holds every
// input voxel the window reads.
func newSampled(gr *Grid, vol *Volume, lo, hi [3]int) (*Sampled, error) {
	if vol.Size != gr.N {
		return nil, fmt.Errorf("sample: volume shape %v, grid input shape %v", vol.Size, gr.N)
	}
	ilo, ihi, empty := gr.InputBox(lo, hi)
	if !empty && !vol.Covers(ilo, ihi) {
		return nil, fmt.Errorf("sample: window %v..%v reads input %v..%v, loaded box is %v+%v", lo, hi, ilo, ihi, vol.Lo, vol.Dim)
	}
	s := &Sampled{Lo: lo, Hi: hi}
	d := s.dims()
	n := d[0] * d[1] * d[2]
	s.Data = make([]float32, n)
	s.Outside = make([]bool, n)
	return s, nil
}

// trilinear is patchref's trilinear_zero for one position: corners in (di, dj, dk) order,
// weight ((wi·wj)·wk), corners outside the volume add zero.
func trilinear(vol *Volume, ix [3]float64) (float32, bool) {
	var f [3]int
	var t [3]float64
	outside := false
	for b := 0; b < 3; b++ {
		fl := math.Floor(ix[b])
		f[b] = int(fl)
		t[b] = ix[b] - fl
		if ix[b] < 0 || ix[b] > float64(vol.Size[b]-1) {
			outside = true
		}
	}
	var acc float64
	for di := 0; di < 2; di++ {
		wi := 1 - t[0]
		if di == 1 {
			wi = t[0]
		}
		i := f[0] + di
		for dj := 0; dj < 2; dj++ {
			wj := 1 - t[1]
			if dj == 1 {
				wj = t[1]
			}
			j := f[1] + dj
			for dk := 0; dk < 2; dk++ {
				wk := 1 - t[2]
				if dk == 1 {
					wk = t[2]
				}
				k := f[2] + dk
				if i < 0 || i >= vol.Size[0] || j < 0 || j >= vol.Size[1] || k < 0 || k >= vol.Size[2] {
					continue
				}
				w := float64(float64(wi*wj) * wk)
				acc += float64(w * float64(vol.At(i-vol.Lo[0], j-vol.Lo[1], k-vol.Lo[2])))
			}
		}
	}
	return float32(acc), outside
}

func sampleSeparable(gr *Grid, vol *Volume, s *Sampled) {
	var tabs [3]axisTab
	for b := 0; b < 3; b++ {
		a := gr.sep[b]
		cnt := s.Hi[a] - s.Lo[a]
		tb := axisTab{f: make([]int, cnt), w0: make([]float64, cnt), w1: make([]float64, cnt), out: make([]bool, cnt)}
		for x := 0; x < cnt; x++ {
			ix := gr.axisIndex(b, s.Lo[a]+x)
			fl := math.Floor(ix)
			t := ix - fl
			// box-relative floor; corners outside the volume are masked below
			tb.f[x] = int(fl) - vol.Lo[b]
			tb.w0[x], tb.w1[x] = 1-t, t
			tb.out[x] = ix < 0 || ix > float64(gr.N[b]-1)
		}
		tabs[b] = tb
	}
	// valid range of box-relative indices per input axis: in-volume voxels only
	var vlo, vhi [3]int
	for b := 0; b < 3; b++ {
		vlo[b] = -vol.Lo[b]
		vhi[b] = gr.N[b] - 1 - vol.Lo[b]
	}
	d := s.dims()
	// o[a] is the output coordinate along output axis a; input axis b reads o[sep[b]].
	var o [3]int
	idx := 0
	stride0 := vol.Dim[0]
	stride1 := vol.Dim[0] * vol.Dim[1]
	data := vol.Data
	for o[0] = 0; o[0] < d[0]; o[0]++ {
		for o[1] = 0; o[1] < d[1]; o[1]++ {
			for o[2] = 0; o[2] < d[2]; o[2]++ {
				x0, x1, x2 := o[gr.sep[0]], o[gr.sep[1]], o[gr.sep[2]]
				fi, fj, fk := tabs[0].f[x0], tabs[1].f[x1], tabs[2].f[x2]
				wi := [2]float64{tabs[0].w0[x0], tabs[0].w1[x0]}
				wj := [2]float64{tabs[1].w0[x1], tabs[1].w1[x1]}
				wk := [2]float64{tabs[2].w0[x2], tabs[2].w1[x2]}
				var acc float64
				for di := 0; di < 2; di++ {
					i := fi + di
					if i < vlo[0] || i > vhi[0] {
						continue
					}
					for dj := 0; dj < 2; dj++ {
						j := fj + dj
						if j < vlo[1] || j > vhi[1] {
							continue
						}
						wij := float64(wi[di] * wj[dj])
						base := j*stride0 + i
						for dk := 0; dk < 2; dk++ {
							k := fk + dk
							if k < vlo[2] || k > vhi[2] {
								continue
							}
							w := float64(wij * wk[dk])
							acc += float64(w * float64(data[k*stride1+base]))
						}
					}
				}
				s.Data[idx] = float32(acc)
				s.Outside[idx] = tabs[0].out[x0] || tabs[1].out[x1] || tabs[2].out[x2]
				idx++
			}
		}
	}
}
