package patch

import (
	"fmt"

	"connectome/models"
)

// Plan is one model's crop on the full resampled grid: everything that decides which voxels
// the tensor holds, before any pixel is read.
type Plan struct {
	Prep   models.Preprocess
	Grid   *Grid
	C      [3]int    // seed index on the grid (RAS axes)
	Lo, Hi [3]int    // crop window [Lo, Hi) on the grid (RAS axes)
	Pads   [3][2]int // SpatialPad before/after per model axis
	// InLo, InHi is the input box [InLo, InHi] (inclusive, index axes i, j, k) the crop reads;
	// InEmpty when it reads nothing (the crop lies wholly in the zero padding).
	InLo, InHi [3]int
	InEmpty    bool
}

// NewPlan computes the crop of one model for a seed (LPS mm) in a volume of geometry g (NIfTI-
// quantised, see Geometry.Quantised). The error wraps ErrSeedOutside when the window is empty.
func NewPlan(g Geometry, seedLPS [3]float64, p models.Preprocess) (*Plan, error) {
	gr, err := NewGrid(g, p.Pixdim)
	if err != nil {
		return nil, err
	}
	return newPlanOnGrid(gr, seedLPS, p)
}

func newPlanOnGrid(gr *Grid, seedLPS [3]float64, p models.Preprocess) (*Plan, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c, err := gr.SeedIndex(seedLPS)
	if err != nil {
		return nil, err
	}
	lo, hi, err := gr.Window(c, p.ROI)
	if err != nil {
		return nil, err
	}
	pl := &Plan{Prep: p, Grid: gr, C: c, Lo: lo, Hi: hi}
	src, _ := axes(p.Axcodes)
	roi := p.ModelROI()
	for t := 0; t < 3; t++ {
		size := hi[src[t]] - lo[src[t]]
		w := max(roi[t]-size, 0)
		pl.Pads[t] = [2]int{w / 2, w - w/2}
	}
	pl.InLo, pl.InHi, pl.InEmpty = gr.InputBox(lo, hi)
	return pl, nil
}

// axes maps model axis t to its RAS source axis and whether it is flipped (spec §2.6).
func axes(codes string) (src [3]int, flip [3]bool) {
	for t, ch := range codes {
		switch ch {
		case 'R':
			src[t] = 0
		case 'L':
			src[t], flip[t] = 0, true
		case 'A':
			src[t] = 1
		case 'P':
			src[t], flip[t] = 1, true
		case 'S':
			src[t] = 2
		case 'I':
			src[t], flip[t] = 2, true
		}
	}
	return src, flip
}

// Shape is the tensor shape (1, 1, R0, R1, R2).
func (pl *Plan) Shape() [5]int {
	r := pl.Prep.ModelROI()
	return [5]int{1, 1, r[0], r[1], r[2]}
}

// Tensor is one model's input: float32, C order, shape (1, 1, R0, R1, R2), and its statistics.
type Tensor struct {
	Plan  *Plan
	Shape [5]int
	Data  []float32
	// Outside counts voxels that come from outside the input volume: SpatialPad padding plus
	// sampled voxels whose position lies outside the volume (partly or wholly zero-padded).
	Outside int
	// Clipped counts sampled voxels that ScaleIntensityRange clipped to b_min or b_max.
	Clipped int
}

// FracOutside is Outside as a fraction of the tensor.
func (t *Tensor) FracOutside() float64 { return float64(t.Outside) / float64(len(t.Data)) }

// FracClipped is Clipped as a fraction of the tensor.
func (t *Tensor) FracClipped() float64 { return float64(t.Clipped) / float64(len(t.Data)) }

// Finish turns the plan's resampled window (s must contain [Lo, Hi)) into the model tensor:
// reorientation (§2.6), ScaleIntensityRange in float32 (§2.7) and symmetric pad (§2.8).
func (pl *Plan) Finish(s *Sampled) (*Tensor, error) {
	for a := 0; a < 3; a++ {
		if pl.Lo[a] < s.Lo[a] || pl.Hi[a] > s.Hi[a] {
			return nil, fmt.Errorf("finish: window %v..%v not inside sampled %v..%v", pl.Lo, pl.Hi, s.Lo, s.Hi)
		}
	}
	src, flip := axes(pl.Prep.Axcodes)
	sd := s.dims()
	sstride := [3]int{sd[1] * sd[2], sd[2], 1}
	shape := pl.Shape()
	r := [3]int{shape[2], shape[3], shape[4]}
	t := &Tensor{Plan: pl, Shape: shape, Data: make([]float32, r[0]*r[1]*r[2])}

	// per model axis: crop length, start offset and step in the sampled buffer
	var cnt, start, step [3]int
	base := 0
	for a := 0; a < 3; a++ {
		base += (pl.Lo[a] - s.Lo[a]) * sstride[a]
	}
	for ax := 0; ax < 3; ax++ {
		ra := src[ax]
		cnt[ax] = pl.Hi[ra] - pl.Lo[ra]
		step[ax] = sstride[ra]
		if flip[ax] {
			start[ax] = (cnt[ax] - 1) * sstride[ra]
			step[ax] = -sstride[ra]
		}
	}
	amin := float32(pl.Prep.HURange[0])
	rng := float32(pl.Prep.HURange[1] - pl.Prep.HURange[0])
	b0 := float32(pl.Prep.Clamp[0])
	b1 := float32(pl.Prep.Clamp[1])
	brng := float32(pl.Prep.Clamp[1] - pl.Prep.Clamp[0])
	inside := 0
	for x := 0; x < cnt[0]; x++ {
		for y := 0; y < cnt[1]; y++ {
			src0 := base + start[0] + x*step[0] + start[1] + y*step[1] + start[2]
			dst := ((x+pl.Pads[0][0])*r[1]+(y+pl.Pads[1][0]))*r[2] + pl.Pads[2][0]
			for z := 0; z < cnt[2]; z++ {
				si := src0 + z*step[2]
				v := s.Data[si]
				if s.Outside[si] {
					t.Outside++
				}
				inside++
				u := float32(v - amin)
				u = float32(u / rng)
				u = float32(float32(u*brng) + b0)
				if u < b0 {
					u = b0
					t.Clipped++
				} else if u > b1 {
					u = b1
					t.Clipped++
				}
				t.Data[dst+z] = u
			}
		}
	}
	t.Outside += len(t.Data) - inside
	return t, nil
}
