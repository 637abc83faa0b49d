package demo

import (
	"math"
)

// Attenuation values (HU) of the phantom's tissues.
const (
	huAir     = -1000
	huLung    = -860
	huFat     = -100
	huTissue  = 45
	huVessel  = 40
	huBone    = 650
	huMarrow  = 250
	huSternum = 400
)

// box is a tumour's extent on one slice in pixels (inclusive column and row ranges).
type box struct {
	Tumour         int
	C0, R0, C1, R1 int
}

// renderSlice draws slice k of the patient's CT in HU (row-major, Rows×Cols) and returns the
// pixel extent of each tumour's body (membership ≥ ½) on it. Every value depends only on the
// patient and the voxel, so slices can be drawn in any order and in parallel.
func (p *patient) renderSlice(k int, hu []int16) []box {
	s := &p.CT
	z := s.z(k)
	// Only what reaches this slice is tested per voxel.
	var vessels []*vessel
	for i := range p.Vessels {
		if v := &p.Vessels[i]; z >= v.zMin && z <= v.zMax {
			vessels = append(vessels, v)
		}
	}
	var tumours []*tumour
	for _, t := range p.Tumours {
		if math.Abs(z-t.Centre[2]) <= t.reach {
			tumours = append(tumours, t)
		}
	}
	boxes := make([]box, len(tumours))
	for i, t := range tumours {
		boxes[i] = box{Tumour: t.Index, C0: s.Cols, R0: s.Rows, C1: -1, R1: -1}
	}
	for row := 0; row < s.Rows; row++ {
		y := s.Origin[1] + float64(row)*s.Spacing
		for col := 0; col < s.Cols; col++ {
			x := s.Origin[0] + float64(col)*s.Spacing
			v := p.background(x, y, z, vessels)
			for i, t := range tumours {
				if math.Abs(x-t.Centre[0]) > t.reach || math.Abs(y-t.Centre[1]) > t.reach {
					continue
				}
				m, mBody, th := t.sample([3]float64{x, y, z})
				if m > 0 {
					v = v*(1-m) + th*m
				}
				if mBody >= 0.5 {
					bx := &boxes[i]
					bx.C0, bx.C1 = min(bx.C0, col), max(bx.C1, col)
					bx.R0, bx.R1 = min(bx.R0, row), max(bx.R1, row)
				}
			}
			v += s.NoiseHU * gauss3(s.NoiseKey, col, row, k)
			hu[row*s.Cols+col] = int16(math.Round(max(-1024, min(3071, v))))
		}
	}
	out := boxes[:0]
	for _, bx := range boxes {
		// A box needs some area: a lesion grazing a slice by a pixel or two is not annotated.
		if bx.C1-bx.C0 >= 1 && bx.R1-bx.R0 >= 1 {
			out = append(out, bx)
		}
	}
	return out
}

// background is the anatomy without tumours, noise-free apart from tissue texture.
func (p *patient) background(x, y, z float64, vessels []*vessel) float64 {
	b := &p.Body
	ex, ey := (x-b.C[0])/b.A, (y-b.C[1])/b.B
	rho := math.Sqrt(ex*ex + ey*ey)
	if rho > 1 {
		// Soft skin edge over ≈1 mm.
		edge := (rho - 1) * b.B
		if edge > 2 {
			return huAir
		}
		w := logistic(-edge / 0.4)
		return huAir*(1-w) + huFat*w
	}
	for i := range p.Lungs {
		l := &p.Lungs[i]
		sv := max(l.s(x, y, z), rho/0.93) // the ribcage bounds the lung
		if sv >= 1.15 {
			continue
		}
		// Parenchyma with a 3–4 mm texture, blended into tissue over ≈1 mm at the pleura.
		v := huLung + 22*valueNoise(b.NoiseKey+uint64(i), x, y, z, 3.5)
		for _, ve := range vessels {
			if x < ve.xMin || x > ve.xMax || y < ve.yMin || y > ve.yMax {
				continue
			}
			d, t := segmentDistanceT([3]float64{x, y, z}, ve.A, ve.B)
			r := ve.RA + (ve.RB-ve.RA)*t
			if d < r+1 {
				mv := logistic((r - d) / 0.3)
				v = v*(1-mv) + huVessel*mv
			}
		}
		w := logistic((1 - sv) * l.R[0] / 2 / 0.5)
		return v*w + p.tissue(x, y, z, rho)*(1-w)
	}
	return p.tissue(x, y, z, rho)
}

// tissue is the trunk outside the lungs: fat under the skin, muscle and mediastinum, ribs,
// the sternum and a vertebral body.
func (p *patient) tissue(x, y, z, rho float64) float64 {
	b := &p.Body
	tex := 10 * valueNoise(b.NoiseKey^0xabc, x, y, z, 4)
	if rho > 0.97 {
		return huFat + tex
	}
	// Vertebral body: cortical rim and marrow.
	vx, vy := x-b.C[0], y-(b.C[1]+0.72*b.B)
	vr := 0.17 * b.B
	if d := math.Sqrt(vx*vx + vy*vy); d < vr {
		if d > vr-2 {
			return huBone + tex
		}
		return huMarrow + 3*tex
	}
	// Sternum, anterior midline (−y is anterior in LPS).
	if sx, sy := (x-b.C[0])/(0.08*b.A), (y-(b.C[1]-0.84*b.B))/(0.05*b.B); sx*sx+sy*sy < 1 {
		return huSternum + tex
	}
	// Ribs: oblique bands in a shell under the muscles, absent over the anterior midline.
	if rho > 0.935 && rho < 0.97 {
		theta := math.Atan2((y-b.C[1])/b.B, (x-b.C[0])/b.A)
		if math.Abs(theta+math.Pi/2) > 0.55 {
			ph := math.Mod(z-b.RibPhase+14*math.Sin(theta), b.RibPeriod)
			if ph < 0 {
				ph += b.RibPeriod
			}
			if ph < 8 {
				return huBone + tex
			}
		}
	}
	return huTissue + tex
}
