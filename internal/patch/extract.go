package patch

import (
	"fmt"

	"connectome/models"
)

// Planner holds the plans of several models for one seed, sharing one grid per pixdim.
type Planner struct {
	Geometry Geometry
	Seed     [3]float64
	Plans    []*Plan // in the order of the preprocessings given
	grids    map[[3]float64]*Grid
	sampled  map[*Grid]*Sampled
}

// NewPlanner plans every preprocessing for seedLPS in geometry g (NIfTI-quantised). An error
// of any model is returned with the model's index; it wraps ErrSeedOutside where it applies.
func NewPlanner(g Geometry, seedLPS [3]float64, preps []models.Preprocess) (*Planner, error) {
	pr := &Planner{Geometry: g, Seed: seedLPS, grids: map[[3]float64]*Grid{}}
	for i, p := range preps {
		gr, ok := pr.grids[p.Pixdim]
		if !ok {
			var err error
			if gr, err = NewGrid(g, p.Pixdim); err != nil {
				return nil, err
			}
			pr.grids[p.Pixdim] = gr
		}
		pl, err := newPlanOnGrid(gr, seedLPS, p)
		if err != nil {
			return nil, fmt.Errorf("preprocessing %d (%s, pixdim %v): %w", i, p.Axcodes, p.Pixdim, err)
		}
		pr.Plans = append(pr.Plans, pl)
	}
	return pr, nil
}

// InputBox is the union of the input boxes of all plans (inclusive; empty when no plan reads
// any voxel).
func (pr *Planner) InputBox() (lo, hi [3]int, empty bool) {
	empty = true
	for _, pl := range pr.Plans {
		if pl.InEmpty {
			continue
		}
		if empty {
			lo, hi, empty = pl.InLo, pl.InHi, false
			continue
		}
		for b := 0; b < 3; b++ {
			lo[b] = min(lo[b], pl.InLo[b])
			hi[b] = max(hi[b], pl.InHi[b])
		}
	}
	return lo, hi, empty
}

// Stats counts the work of one Extract.
type Stats struct {
	VoxelsSampled int64 // output grid voxels interpolated
}

// Extract builds every plan's tensor from vol, which must cover InputBox. Plans that share a
// grid share one resampled window: the union of their windows.
func (pr *Planner) Extract(vol *Volume) ([]*Tensor, Stats, error) {
	var st Stats
	sampled := map[*Grid]*Sampled{}
	for _, pl := range pr.Plans {
		s, ok := sampled[pl.Grid]
		if ok {
			continue
		}
		lo, hi := pl.Lo, pl.Hi
		for _, q := range pr.Plans {
			if q.Grid != pl.Grid {
				continue
			}
			for a := 0; a < 3; a++ {
				lo[a] = min(lo[a], q.Lo[a])
				hi[a] = max(hi[a], q.Hi[a])
			}
		}
		s, err := Sample(pl.Grid, vol, lo, hi)
		if err != nil {
			return nil, st, err
		}
		st.VoxelsSampled += int64(len(s.Data))
		sampled[pl.Grid] = s
	}
	out := make([]*Tensor, len(pr.Plans))
	for i, pl := range pr.Plans {
		t, err := pl.Finish(sampled[pl.Grid])
		if err != nil {
			return nil, st, err
		}
		out[i] = t
	}
	pr.sampled = sampled
	return out, st, nil
}

// Sampled is the resampled HU window (before scaling) that plan i's tensor was cut from, after
// Extract; it contains [Lo, Hi) of that plan.
func (pr *Planner) Sampled(i int) *Sampled { return pr.sampled[pr.Plans[i].Grid] }

// TensorIndex maps an LPS point to continuous coordinates in plan pl's tensor (model axes,
// after reorientation and padding), for drawing on previews. Only axis-aligned grids are
// meaningful (B is diagonal).
func (pl *Plan) TensorIndex(lps [3]float64) [3]float64 {
	ras := [3]float64{-lps[0], -lps[1], lps[2]}
	src, flip := axes(pl.Prep.Axcodes)
	var out [3]float64
	for t := 0; t < 3; t++ {
		a := src[t]
		v := (ras[a]-pl.Grid.B[a][3])/pl.Grid.B[a][a] - float64(pl.Lo[a])
		if flip[t] {
			v = float64(pl.Hi[a]-pl.Lo[a]-1) - v
		}
		out[t] = v + float64(pl.Pads[t][0])
	}
	return out
}

// SeedTensorIndex is the seed voxel's index in the tensor (model axes).
func (pl *Plan) SeedTensorIndex() [3]int {
	src, flip := axes(pl.Prep.Axcodes)
	var out [3]int
	for t := 0; t < 3; t++ {
		a := src[t]
		v := pl.C[a] - pl.Lo[a]
		if flip[t] {
			v = pl.Hi[a] - pl.Lo[a] - 1 - v
		}
		out[t] = v + pl.Pads[t][0]
	}
	return out
}
