package demo

import (
	"math"
	"math/rand/v2"
	"slices"
)

// tumour is one generated lesion: an ellipsoid with a lobulated surface, a soft partial-volume
// edge, an internal texture and, by kind and texture, a solid core, a necrotic or air-filled
// centre, calcium specks, air bubbles or spicules.
type tumour struct {
	Index    int
	Kind     string
	Texture  string
	Lung     int        // 0 right, 1 left
	Lobe     string     // NLST sct_epi_loc code
	Centre   [3]float64 // LPS mm
	Diameter float64    // nominal (2 × mean semi-axis), mm

	radii    [3]float64
	rot      [3][3]float64 // rows: the local axes in LPS
	lobAmp   float64
	lobK     [2]float64
	lobPhase [2]float64
	density  float64 // HU of the main tissue
	noiseAmp float64 // HU amplitude of the internal texture
	noiseKey uint64
	cell     float64 // texture correlation length, mm
	coreHU   float64 // solid core, necrosis or cavity
	coreFrac float64 // its radius as a fraction of the surface radius; 0 = none
	specks   []speck // calcifications or air bubbles
	spikes   []spike
	reach    float64 // beyond this distance from the centre the tumour contributes nothing
}

type speck struct {
	C  [3]float64
	R  float64
	HU float64
}

type spike struct {
	Dir         [3]float64 // unit
	Start, End  float64    // distance along Dir from the centre, mm
	Width       float64    // radius at Start, tapering to 0 at End
	DensityHUOf float64
}

// planTumour places a tumour of the given kind in one lung. The second tumour of a patient
// (index 1) goes to the other lung: its boxes never overlap the first one's in plane, so the
// cohort stage keeps them apart even on the same slices. It returns nil when no place is
// found. The draws from r follow one fixed order (the cohort's bytes depend on it).
func planTumour(ti int, kind string, p *patient, r *rand.Rand) *tumour {
	t := &tumour{Index: ti, Kind: kind, noiseKey: r.Uint64()}
	tex := texturesOf[kind]
	t.Texture = tex[r.IntN(len(tex))]
	// Diameter: log-uniform within the kind's range.
	lo, hi := diameterRange(kind, t.Texture)
	d := lo * math.Pow(hi/lo, r.Float64())

	t.Lung = r.IntN(2)
	if ti == 1 {
		t.Lung = 1 - p.Tumours[0].Lung
	}
	l := &p.Lungs[t.Lung]
	c, d, ok := placeInLung(l, d, lo, r)
	if !ok {
		return nil
	}
	t.Centre, t.Diameter = c, d
	t.planShape(r)
	t.planTissue(r)
	t.planTexture(r)
	t.reach = t.reachOf()
	t.Lobe = lobe(t, l)
	return t
}

// diameterRange is the range of nominal diameters (mm) of a kind and texture: subsolid
// lesions and textures with inner structure need room for it.
func diameterRange(kind, texture string) (lo, hi float64) {
	lo, hi = 6.0, 40.0
	switch kind {
	case KindPartSolid:
		lo = 10
	case KindGroundGlass:
		hi = 30
	}
	switch texture {
	case TextureNecrotic, TextureCavitary:
		lo = 15
	case TextureBubbly:
		lo = 12
	}
	return lo, hi
}

// placeInLung draws a centre for a tumour of diameter d in lung l, shrinking d towards lo
// while no place is found; ok is false after 4000 draws.
func placeInLung(l *lung, d, lo float64, r *rand.Rand) (c [3]float64, dOut float64, ok bool) {
	for try := 0; ; try++ {
		if try > 0 && try%40 == 0 {
			d = max(d*0.9, lo) // shrink towards the kind's smallest size until it fits
		}
		if try > 4000 {
			return c, d, false
		}
		// Near the middle of the lung in plane: every crop then holds about the same share of
		// chest wall and mediastinum, so what differs between crops is the tumour.
		c = [3]float64{
			l.C[0] + (2*r.Float64()-1)*1,
			l.C[1] + (2*r.Float64()-1)*4,
			l.C[2] + (2*r.Float64()-1)*max(0.6*l.R[2]-32, 8),
		}
		if fitsInLung(l, c, d) {
			return c, d, true
		}
	}
}

// fitsInLung reports whether a tumour of diameter d at c, with a margin around it, stays in
// lung l, and whether the crop around it stays within the lung in plane. The crop around a
// tumour is then mostly lung, as for most screening nodules, and the map groups tumours
// rather than the chest wall or mediastinum next to them.
func fitsInLung(l *lung, c [3]float64, d float64) bool {
	const margin, cropHalf = 6.0, 22.0
	rad := d/2 + margin
	for _, o := range [][3]float64{{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1},
		{0.7, 0.7, 0}, {-0.7, 0.7, 0}, {0.7, -0.7, 0}, {-0.7, -0.7, 0}} {
		if l.s(c[0]+o[0]*rad, c[1]+o[1]*rad, c[2]+o[2]*rad) >= 0.85 {
			return false
		}
	}
	for _, o := range [][2]float64{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
		if l.s(c[0]+o[0]*cropHalf, c[1]+o[1]*cropHalf, c[2]) >= 1 {
			return false
		}
	}
	return true
}

// planShape draws the semi-axes (mean exactly Diameter/2), the orientation, the lobulation
// and the texture's correlation length.
func (t *tumour) planShape(r *rand.Rand) {
	d := t.Diameter
	for a := range t.radii {
		t.radii[a] = d / 2 * (0.85 + 0.3*r.Float64())
	}
	mean := (t.radii[0] + t.radii[1] + t.radii[2]) / 3
	for a := range t.radii { // keep the nominal diameter exact
		t.radii[a] *= d / 2 / mean
	}
	t.rot = randomRotation(r)
	t.lobAmp = 0.03 + 0.05*r.Float64()
	if t.Texture == TextureLobulated {
		t.lobAmp = 0.14 + 0.1*r.Float64()
	}
	t.lobK = [2]float64{float64(2 + r.IntN(3)), float64(2 + r.IntN(3))}
	t.lobPhase = [2]float64{2 * math.Pi * r.Float64(), 2 * math.Pi * r.Float64()}
	t.cell = 2 + 1.5*r.Float64()
}

// planTissue draws the attenuation of the kind: density, texture amplitude and, for a
// part-solid tumour, its solid core.
func (t *tumour) planTissue(r *rand.Rand) {
	switch t.Kind {
	case KindSolid:
		t.density = 20 + 40*r.Float64()
		t.noiseAmp = 12 + 12*r.Float64()
	case KindPartSolid:
		t.density = -620 + 140*r.Float64()
		t.noiseAmp = 30 + 30*r.Float64()
		t.coreHU = 10 + 40*r.Float64()
		t.coreFrac = 0.25 + 0.15*r.Float64()
	case KindGroundGlass:
		t.density = -700 + 200*r.Float64()
		t.noiseAmp = 25 + 25*r.Float64()
	}
}

// planTexture draws what the texture adds: a necrotic or air-filled centre, a coarser
// texture, calcium specks, air bubbles or spicules.
func (t *tumour) planTexture(r *rand.Rand) {
	R := t.Diameter / 2
	switch t.Texture {
	case TextureNecrotic:
		t.coreHU = -15 + 25*r.Float64()
		t.coreFrac = 0.4 + 0.2*r.Float64()
	case TextureCavitary:
		t.coreHU = -920 + 40*r.Float64()
		t.coreFrac = 0.3 + 0.25*r.Float64()
	case TextureHeterogeneous:
		t.noiseAmp = 80 + 40*r.Float64()
		t.cell = 1.5 + r.Float64()
	case TextureCalcified:
		n := 1 + r.IntN(4)
		for range n {
			t.specks = append(t.specks, speck{C: randomIn(r, t.Centre, 0.6*R), R: 0.8 + 1.4*r.Float64(), HU: 350 + 550*r.Float64()})
		}
	case TextureBubbly:
		n := 2 + r.IntN(4)
		for range n {
			t.specks = append(t.specks, speck{C: randomIn(r, t.Centre, 0.7*R), R: 0.6 + 0.8*r.Float64(), HU: -930})
		}
	case TextureSpiculated:
		n := 10 + r.IntN(10)
		for range n {
			t.spikes = append(t.spikes, spike{
				Dir: randomDir(r), Start: 0.7 * R, End: R * (1.3 + 0.6*r.Float64()),
				Width: 0.6 + 0.6*r.Float64() + 0.04*R, DensityHUOf: 20 + 30*r.Float64(),
			})
		}
	}
}

// reachOf is the distance from the centre beyond which the tumour contributes nothing.
func (t *tumour) reachOf() float64 {
	R := t.Diameter / 2
	reach := R*(1+t.lobAmp)*1.15 + 2 // the surface radius is at most max(radii)·(1+lobAmp)
	for _, a := range t.radii {
		reach = max(reach, a*(1+t.lobAmp)+2)
	}
	for _, s := range t.spikes {
		reach = max(reach, s.End+1)
	}
	return reach
}

// lobe maps the position in the lung to an NLST sct_epi_loc code (1 RUL, 2 RML, 3 RLL,
// 4 LUL, 5 lingula, 6 LLL) by thirds of the lung's height.
func lobe(t *tumour, l *lung) string {
	f := (t.Centre[2] - (l.C[2] - l.R[2])) / (2 * l.R[2]) // 0 at the base, 1 at the apex
	third := 2
	switch {
	case f > 2.0/3:
		third = 0
	case f > 1.0/3:
		third = 1
	}
	return []string{"1", "2", "3", "4", "5", "6"}[t.Lung*3+third]
}

// sample returns the tumour's membership m at p (0 outside, 1 inside, soft at the edge), the
// membership of its main body alone (what a radiologist's box encloses: no spicules), and
// its attenuation there.
func (t *tumour) sample(p [3]float64) (m, mBody, hu float64) {
	d := [3]float64{p[0] - t.Centre[0], p[1] - t.Centre[1], p[2] - t.Centre[2]}
	dist := math.Sqrt(d[0]*d[0] + d[1]*d[1] + d[2]*d[2])
	if dist > t.reach {
		return 0, 0, 0
	}
	var q [3]float64
	for a := range 3 {
		q[a] = (t.rot[a][0]*d[0] + t.rot[a][1]*d[1] + t.rot[a][2]*d[2]) / t.radii[a]
	}
	rho := math.Sqrt(q[0]*q[0] + q[1]*q[1] + q[2]*q[2])
	f := 1.0
	if rho > 1e-9 {
		theta := math.Atan2(q[1], q[0])
		phi := math.Acos(max(-1, min(1, q[2]/rho)))
		f = 1 + t.lobAmp*math.Sin(t.lobK[0]*theta+t.lobPhase[0])*math.Sin(t.lobK[1]*phi+t.lobPhase[1])
	}
	rMean := t.Diameter / 2
	// Signed distance to the surface, approximately, in mm; the edge spreads over ≈0.5 mm.
	sd := (rho - f) * rMean
	mBody = logistic(-sd / 0.35)
	hu = t.density + t.noiseAmp*valueNoise(t.noiseKey, p[0], p[1], p[2], t.cell)
	if t.coreFrac > 0 {
		mc := logistic(-(rho/f - t.coreFrac) * rMean / 0.4)
		coreHU := t.coreHU
		if t.Kind == KindPartSolid {
			coreHU += 15 * valueNoise(t.noiseKey^0x5a5a, p[0], p[1], p[2], t.cell)
		}
		hu = hu*(1-mc) + coreHU*mc
	}
	for _, s := range t.specks {
		ds := math.Sqrt(sq(p[0]-s.C[0]) + sq(p[1]-s.C[1]) + sq(p[2]-s.C[2]))
		if ds < s.R+1.5 {
			ms := logistic((s.R - ds) / 0.3)
			hu = hu*(1-ms) + s.HU*ms
		}
	}
	m = mBody
	if len(t.spikes) > 0 && mBody < 0.99 {
		for _, s := range t.spikes {
			along := d[0]*s.Dir[0] + d[1]*s.Dir[1] + d[2]*s.Dir[2]
			if along < s.Start || along > s.End {
				continue
			}
			perp := math.Sqrt(max(0, dist*dist-along*along))
			w := s.Width * (s.End - along) / (s.End - s.Start)
			if ms := logistic((w - perp) / 0.25); ms > m {
				// Blend towards the spicule's own density outside the body.
				hu = (hu*mBody + s.DensityHUOf*(ms-mBody)) / ms
				m = ms
			}
		}
	}
	return m, mBody, hu
}

func logistic(x float64) float64 {
	if x > 30 {
		return 1
	}
	if x < -30 {
		return 0
	}
	return 1 / (1 + math.Exp(-x))
}

func sq(v float64) float64 { return v * v }

func randomDir(r *rand.Rand) [3]float64 {
	for {
		v := [3]float64{r.NormFloat64(), r.NormFloat64(), r.NormFloat64()}
		n := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2])
		if n > 1e-6 {
			return [3]float64{v[0] / n, v[1] / n, v[2] / n}
		}
	}
}

// randomIn returns a uniform point in the ball of radius rad around c.
func randomIn(r *rand.Rand, c [3]float64, rad float64) [3]float64 {
	v := randomDir(r)
	s := rad * math.Cbrt(r.Float64())
	return [3]float64{c[0] + v[0]*s, c[1] + v[1]*s, c[2] + v[2]*s}
}

// randomRotation returns a random orthonormal basis (Gram–Schmidt on two random directions).
func randomRotation(r *rand.Rand) [3][3]float64 {
	a := randomDir(r)
	b := randomDir(r)
	dot := a[0]*b[0] + a[1]*b[1] + a[2]*b[2]
	for i := range b {
		b[i] -= dot * a[i]
	}
	n := math.Sqrt(b[0]*b[0] + b[1]*b[1] + b[2]*b[2])
	if n < 1e-6 {
		return [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	}
	for i := range b {
		b[i] /= n
	}
	c := [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
	return [3][3]float64{a, b, c}
}

// vessel is a pulmonary vessel segment in a lung, from the hilum outwards, tapering.
type vessel struct {
	A, B   [3]float64
	RA, RB float64 // radius at A and at B
	// bounding box (mm), for a cheap rejection before the distance test
	xMin, xMax, yMin, yMax, zMin, zMax float64
}

// planVessels draws a few straight, tapering vessels per lung from the hilum. A vessel that
// would pass close to a tumour is dropped: in a demo whose point is that lookalike tumours
// end up together, a vessel crossing the crop would be a confounder that only adds noise.
func planVessels(p *patient, r *rand.Rand) []vessel {
	var out []vessel
	for side := range p.Lungs {
		l := &p.Lungs[side]
		hilum := [3]float64{l.C[0] - 0.55*l.R[0]*sign(l.C[0]-p.Body.C[0]), l.C[1] - 0.1*l.R[1], l.C[2] + 0.1*l.R[2]}
		for range 7 {
			var end [3]float64
			for {
				end = [3]float64{
					l.C[0] + (2*r.Float64()-1)*l.R[0]*0.85,
					l.C[1] + (2*r.Float64()-1)*l.R[1]*0.85,
					l.C[2] + (2*r.Float64()-1)*l.R[2]*0.8,
				}
				if l.s(end[0], end[1], end[2]) < 0.6 {
					break
				}
			}
			v := vessel{A: hilum, B: end, RA: 1.6 + 0.8*r.Float64(), RB: 0.6 + 0.3*r.Float64()}
			pad := v.RA + 1
			v.xMin, v.xMax = min(v.A[0], v.B[0])-pad, max(v.A[0], v.B[0])+pad
			v.yMin, v.yMax = min(v.A[1], v.B[1])-pad, max(v.A[1], v.B[1])+pad
			v.zMin, v.zMax = min(v.A[2], v.B[2])-pad, max(v.A[2], v.B[2])+pad
			clear := true
			for _, t := range p.Tumours {
				if segmentDistance(t.Centre, v.A, v.B) < 36 {
					clear = false
				}
			}
			if clear {
				out = append(out, v)
			}
		}
	}
	return slices.Clip(out)
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}

// segmentDistance is the distance from p to the segment ab.
func segmentDistance(p, a, b [3]float64) float64 {
	d, _ := segmentDistanceT(p, a, b)
	return d
}

func segmentDistanceT(p, a, b [3]float64) (dist, t float64) {
	ab := [3]float64{b[0] - a[0], b[1] - a[1], b[2] - a[2]}
	ap := [3]float64{p[0] - a[0], p[1] - a[1], p[2] - a[2]}
	l2 := ab[0]*ab[0] + ab[1]*ab[1] + ab[2]*ab[2]
	if l2 > 0 {
		t = max(0, min(1, (ap[0]*ab[0]+ap[1]*ab[1]+ap[2]*ab[2])/l2))
	}
	dx, dy, dz := ap[0]-t*ab[0], ap[1]-t*ab[1], ap[2]-t*ab[2]
	return math.Sqrt(dx*dx + dy*dy + dz*dz), t
}
