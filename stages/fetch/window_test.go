package fetch

import (
	"errors"
	"fmt"
	"math"

	"connectome/internal/dicomio"
	"connectome/internal/tables"
	"connectome/models"
)

// The window planner is the exact planner's test oracle and benchmark reference: simple
// enough to be obviously conservative, so the exact plan must lie inside its slices.

// WindowPlanner is a conservative planner that needs no resampling maths: every slice whose
// position along the slice normal lies within the crop's half-extent projected on the normal,
// plus Margin slice spacings and one output voxel, of the seed. The margin covers trilinear
// neighbours, the seed's truncation and MONAI's align-corners scaling (at most about one input
// slice each), so the exact input box lies inside.
type WindowPlanner struct {
	// Margin in slice spacings on each side; 0 means 3.
	Margin float64
}

// Name implements SlicePlanner.
func (w WindowPlanner) Name() string { return fmt.Sprintf("window%+g", w.margin()) }

func (w WindowPlanner) margin() float64 {
	if w.Margin <= 0 {
		return 3
	}
	return w.Margin
}

// NeededSlices implements SlicePlanner.
func (w WindowPlanner) NeededSlices(series []tables.Instance, seedLPS [3]float64, p models.Preprocess) ([]string, error) {
	if len(series) == 0 {
		return nil, errors.New("empty series")
	}
	iop := series[0].ImageOrientationPatient
	n := [3]float64{
		iop[1]*iop[5] - iop[2]*iop[4],
		iop[2]*iop[3] - iop[0]*iop[5],
		iop[0]*iop[4] - iop[1]*iop[3],
	}
	if nn := n[0]*n[0] + n[1]*n[1] + n[2]*n[2]; math.Abs(nn-1) > 1e-3 {
		return nil, fmt.Errorf("ImageOrientationPatient %v is not two orthonormal vectors: %w", iop, dicomio.ErrGeometry)
	}
	pos := make([]float64, len(series))
	for i, in := range series {
		pos[i] = dot(n, in.ImagePositionPatient)
	}
	spacing := 0.0
	if len(series) > 1 {
		lo, hi := slicesMinMax(pos)
		spacing = (hi - lo) / float64(len(series)-1)
	}
	// The crop is an axis-aligned box in RAS (= LPS axes up to sign); its half-extent along
	// the normal is the sum of |n_a| times the half-extent along axis a.
	half, maxPix := 0.0, 0.0
	for a := 0; a < 3; a++ {
		half += math.Abs(n[a]) * float64(p.ROI[a]) / 2 * p.Pixdim[a]
		maxPix = math.Max(maxPix, p.Pixdim[a])
	}
	reach := half + w.margin()*spacing + maxPix
	seed := dot(n, seedLPS)
	var out []string
	for i, in := range series {
		if math.Abs(pos[i]-seed) <= reach {
			out = append(out, in.SOPInstanceUID)
		}
	}
	return out, nil
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

func slicesMinMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}
