package dicomio

import (
	"fmt"

	"connectome/internal/patch"
	"connectome/models"
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
	if err := SeedInside(s.Geometry, seedLPS); err != nil {
		return nil, err
	}
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

// SeedTolerance is how far (mm, along each index axis) a seed may lie beyond the outermost
// voxel centres of the series: an annotation on an edge slice, or rounded, sits just outside.
// A seed farther out would give a crop that is mostly zero padding, so it is an item failure.
const SeedTolerance = 5.0

// SeedInside checks that seedLPS lies within the volume of g, widened by SeedTolerance.
func SeedInside(g patch.Geometry, seedLPS [3]float64) error {
	for c := 0; c < 3; c++ {
		var mm float64 // distance from the origin along index axis c
		for r := 0; r < 3; r++ {
			mm += g.Direction[r][c] * (seedLPS[r] - g.Origin[r])
		}
		hi := float64(g.Size[c]-1) * g.Spacing[c]
		if !(mm >= -SeedTolerance && mm <= hi+SeedTolerance) {
			// the callers name the seed
			return fmt.Errorf("at %.1f mm along index axis %d, outside the volume's 0..%.1f mm (tolerance %.0f mm): %w",
				mm, c, hi, SeedTolerance, patch.ErrSeedOutside)
		}
	}
	return nil
}
