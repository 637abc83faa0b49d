package fetch

import (
	"fmt"
	"sort"

	"connectome/internal/dicomio"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/models"
)

// SlicePlanner says which slices of a series one model's crop reads, from the slice geometry
// alone (the instances table), before any file is downloaded.
type SlicePlanner interface {
	// NeededSlices returns the SOP instance uids of the slices of series that the crop of a
	// model with preprocessing p around seedLPS reads. An empty result with a nil error means
	// the crop reads no slice (it lies wholly in the zero padding).
	NeededSlices(series []tables.Instance, seedLPS [3]float64, p models.Preprocess) ([]string, error)
	// Name identifies the planner in the config hash: a different planner fetches other slices.
	Name() string
}

// PatchPlanner is the exact planner: the input box of the crop-only resampling of package
// patch (preprocessing-spec §4.3), on the series geometry that preprocess will use.
type PatchPlanner struct{}

// Name implements SlicePlanner.
func (PatchPlanner) Name() string { return "patch" }

// NeededSlices implements SlicePlanner.
func (PatchPlanner) NeededSlices(series []tables.Instance, seedLPS [3]float64, p models.Preprocess) ([]string, error) {
	s, err := dicomio.FromInstances(series, func(tables.Instance) string { return "" })
	if err != nil {
		return nil, err
	}
	pl, err := patch.NewPlan(s.Geometry, seedLPS, p)
	if err != nil {
		return nil, err
	}
	if pl.InEmpty {
		return nil, nil
	}
	out := make([]string, 0, pl.InHi[2]-pl.InLo[2]+1)
	for k := pl.InLo[2]; k <= pl.InHi[2]; k++ {
		out = append(out, s.Slices[k].SOPInstanceUID)
	}
	return out, nil
}

// lessonPlan is what one lesion needs.
type lesionPlan struct {
	lesion  tables.Lesion
	objects []*object
	// whole-series totals, for the plan's report
	seriesObjects int
	seriesBytes   int64
	err           error // *pipeline.ItemError when the lesion cannot be planned
	cropErrs      []string
}

// crop is one preprocessing whose input slices must be fetched.
type crop struct {
	name string
	prep models.Preprocess
}

// planSlices unions the slices every crop reads. A crop that cannot be placed (seed outside
// the volume) is left to preprocess, which records it; the lesion fails here only when no
// crop can use it. A series without geometry in the table is fetched whole, since preprocess
// then reads the geometry from the files' headers.
func planSlices(pl SlicePlanner, series []tables.Instance, lesion tables.Lesion, crops []crop) (sops map[string]bool, cropErrs []string, err error) {
	sops = map[string]bool{}
	if lacksGeometry(series) {
		for _, in := range series {
			sops[in.SOPInstanceUID] = true
		}
		return sops, []string{"the instances table has no slice geometry: fetching the whole series"}, nil
	}
	var firstErr error
	for _, c := range crops {
		uids, err := pl.NeededSlices(series, lesion.CenterMM, c.prep)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("crop %s: %w", c.name, err)
			}
			cropErrs = append(cropErrs, fmt.Sprintf("%s: %v", c.name, err))
			continue
		}
		for _, u := range uids {
			sops[u] = true
		}
	}
	if len(cropErrs) == len(crops) {
		return nil, cropErrs, firstErr
	}
	return sops, cropErrs, nil
}

// lacksGeometry reports whether some row has no usable geometry (a cohort from files whose
// headers were not read).
func lacksGeometry(series []tables.Instance) bool {
	for _, in := range series {
		if in.Rows <= 0 || in.Columns <= 0 || !(in.PixelSpacing[0] > 0) || !(in.PixelSpacing[1] > 0) || in.ImageOrientationPatient == [6]float64{} {
			return true
		}
	}
	return false
}

func cropsOf(specs []*models.Spec, extra []models.Preprocess) []crop {
	var out []crop
	for _, sp := range specs {
		out = append(out, crop{sp.Name, sp.Preprocess})
	}
	for i, p := range extra {
		out = append(out, crop{fmt.Sprintf("extra%d", i+1), p})
	}
	return out
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
