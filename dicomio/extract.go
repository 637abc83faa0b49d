package dicomio

import (
	"fmt"

	"connectome/models"
	"connectome/patch"
)

// Result is the outcome of Extract: one tensor per preprocessing, in the order given.
type Result struct {
	Planner *patch.Planner
	Tensors []*patch.Tensor
	Load    LoadStats   // files and bytes read
	Stats   patch.Stats // voxels sampled
}

// Extract plans every preprocessing for seedLPS on series s, checks the slices the crops read,
// reads just those slices (and only the rows and columns in the crops' input box) and builds
// the tensors. Errors wrap patch.ErrSeedOutside, ErrGeometry, ErrUnsupported or
// ErrNoPixelData where they apply.
func Extract(s *Series, seedLPS [3]float64, preps []models.Preprocess) (*Result, error) {
	pr, err := patch.NewPlanner(s.Geometry, seedLPS, preps)
	if err != nil {
		return nil, err
	}
	res := &Result{Planner: pr}
	lo, hi, empty := pr.InputBox()
	if empty {
		// every crop lies in the zero padding: nothing to read
		lo, hi = [3]int{0, 0, 0}, [3]int{-1, -1, -1}
	} else if err := s.CheckWindow(lo[2], hi[2]); err != nil {
		return nil, err
	}
	vol, ls, err := s.LoadBox(lo, hi)
	res.Load = ls
	if err != nil {
		return nil, err
	}
	res.Tensors, res.Stats, err = pr.Extract(vol)
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	return res, nil
}
