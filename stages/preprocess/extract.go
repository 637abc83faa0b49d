package preprocess

import (
	"math"

	"connectome/internal/dicomio"
	"connectome/internal/patch"
	"connectome/models"
)

// Lesion is the stage's work for one seed: the model tensors plus the QC patch and the mean HU
// near the seed.
type Lesion struct {
	Tensors []*patch.Tensor // in the order of the specs
	QC      *patch.Tensor   // 1 mm, 64³, RAS, HU −1000..400 → 0..1
	MeanHU  float64         // mean HU in a ball of 10 mm diameter at the seed (NaN: no voxel)
	Load    dicomio.LoadStats
	Stats   patch.Stats
}

// Extract builds every spec's tensor and the QC patch for one seed. The QC patch shares the
// 1 mm grid with the 1 mm models, so it costs (almost) no extra sampling.
func Extract(s *dicomio.Series, seedLPS [3]float64, specs []*models.Spec) (*Lesion, error) {
	preps := make([]models.Preprocess, 0, len(specs)+1)
	for _, sp := range specs {
		preps = append(preps, sp.Preprocess)
	}
	preps = append(preps, QCCrop())
	res, err := dicomio.Extract(s, seedLPS, preps)
	if err != nil {
		return nil, err
	}
	qi := len(specs)
	out := &Lesion{Tensors: res.Tensors[:qi], QC: res.Tensors[qi], Load: res.Load, Stats: res.Stats}
	out.MeanHU = meanHU(res.Planner.Sampled(qi), res.Planner.Plans[qi], 5)
	return out, nil
}

// meanHU averages the in-volume voxels of the 1 mm window within radius mm of the seed voxel.
func meanHU(s *patch.Sampled, pl *patch.Plan, radius float64) float64 {
	dims := [3]int{s.Hi[0] - s.Lo[0], s.Hi[1] - s.Lo[1], s.Hi[2] - s.Lo[2]}
	var sum float64
	n := 0
	r := int(math.Ceil(radius))
	for x := pl.C[0] - r; x <= pl.C[0]+r; x++ {
		for y := pl.C[1] - r; y <= pl.C[1]+r; y++ {
			for z := pl.C[2] - r; z <= pl.C[2]+r; z++ {
				dx, dy, dz := float64(x-pl.C[0]), float64(y-pl.C[1]), float64(z-pl.C[2])
				if dx*dx+dy*dy+dz*dz > radius*radius {
					continue
				}
				u, v, w := x-s.Lo[0], y-s.Lo[1], z-s.Lo[2]
				if u < 0 || v < 0 || w < 0 || u >= dims[0] || v >= dims[1] || w >= dims[2] {
					continue
				}
				i := (u*dims[1]+v)*dims[2] + w
				if s.Outside[i] {
					continue
				}
				sum += float64(s.Data[i])
				n++
			}
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}
