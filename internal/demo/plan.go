package demo

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Tumour kinds: the ground truth that the meaningfulness test checks the map against.
const (
	KindSolid       = "solid"
	KindPartSolid   = "part-solid"
	KindGroundGlass = "ground-glass"
)

// Kinds lists the tumour kinds in a fixed order.
func Kinds() []string { return []string{KindSolid, KindPartSolid, KindGroundGlass} }

// Textures: a second, finer ground-truth attribute (not asserted on; shown for inspection).
const (
	TextureSmooth        = "smooth"
	TextureLobulated     = "lobulated"
	TextureSpiculated    = "spiculated"
	TextureNecrotic      = "necrotic"      // solid with a low-attenuation (≈0 HU) centre
	TextureCavitary      = "cavitary"      // solid with an air-filled centre
	TextureCalcified     = "calcified"     // bright calcium specks inside
	TextureHeterogeneous = "heterogeneous" // ground glass with strong internal variation
	TextureBubbly        = "bubbly"        // ground glass with small air bubbles
)

var texturesOf = map[string][]string{
	KindSolid:       {TextureSmooth, TextureLobulated, TextureSpiculated, TextureNecrotic, TextureCavitary, TextureCalcified},
	KindPartSolid:   {TextureSmooth, TextureLobulated},
	KindGroundGlass: {TextureSmooth, TextureHeterogeneous, TextureBubbly},
}

// Storage orders of a CT series' InstanceNumbers relative to slice position.
const (
	OrderAscending  = "ascending"  // InstanceNumber 1 is the most inferior slice
	OrderDescending = "descending" // InstanceNumber 1 is the most superior slice (most NLST series)
	OrderShuffled   = "shuffled"   // InstanceNumbers are a permutation unrelated to position
)

// patient is everything the generator decides for one patient before any voxel is drawn.
type patient struct {
	Index     int
	PatientID string
	StudyUID  string
	CRDCStudy string
	StudyDate string // YYYYMMDD, NLST's coded screening dates
	StudyYear int    // 0, 1, 2 (T0..T2)
	Age       int
	Gender    string // NLST codes: 1 male, 2 female
	Race      string
	Cigsmok   string // 1 current, 0 former
	DeType    string // ICD-O-3 morphology
	DeStag    string // AJCC stage code

	CT      ctSeries
	SR      srRef
	Body    body
	Lungs   [2]lung // right (−x in LPS), left (+x)
	Vessels []vessel
	Tumours []*tumour
}

type ctSeries struct {
	UID, FrameOfReference, CRDCSeries string
	SeriesNumber                      int
	Rows, Cols                        int
	Spacing                           float64 // in-plane pixel spacing (square), mm
	Thickness                         float64 // slice thickness = slice spacing, mm
	Origin                            [3]float64
	Order                             string
	Instances                         []ctInstance // by z index, 0 = lowest z
	Signed                            bool
	Intercept                         float64
	BitsStored                        int
	NoiseHU                           float64
	NoiseKey                          uint64
}

type ctInstance struct {
	SOPUID, CRDCInstance string
	Number               int
}

type srRef struct {
	SeriesUID, SOPUID, CRDCSeries, CRDCInstance string
	SeriesNumber                                int
}

// z returns the position of slice k.
func (s *ctSeries) z(k int) float64 { return s.Origin[2] + float64(k)*s.Thickness }

// ipp returns the ImagePositionPatient of slice k.
func (s *ctSeries) ipp(k int) [3]float64 { return [3]float64{s.Origin[0], s.Origin[1], s.z(k)} }

// nearestSlice returns the z index of the slice closest to z.
func (s *ctSeries) nearestSlice(z float64) int {
	k := int(math.Round((z - s.Origin[2]) / s.Thickness))
	return min(max(k, 0), len(s.Instances)-1)
}

// plan decides every patient of the cohort. Patient i's draws come from a stream keyed by
// (seed, i), except its first tumour's kind, which is dealt from a seeded shuffle so that the
// kinds stay balanced (and the draws after it depend on that kind).
func plan(o Options) ([]*patient, error) {
	kinds := make([]string, o.Patients)
	for i := range kinds {
		kinds[i] = Kinds()[i%len(Kinds())]
	}
	stream(o.Seed, "kinds", o.Patients).Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	out := make([]*patient, o.Patients)
	for i := range out {
		p := planPatient(o.Seed, i, kinds[i])
		if p == nil {
			return nil, fmt.Errorf("demo: patient %d: no place found for its tumour", i+1)
		}
		out[i] = p
	}
	return out, nil
}

func planPatient(seed int64, i int, kind string) *patient {
	r := stream(seed, "patient", i)
	p := &patient{
		Index:     i,
		PatientID: fmt.Sprintf("DEMO%04d", i+1),
		StudyUID:  uid(seed, "study", i),
		CRDCStudy: crdcUUID(seed, "crdc-study", i),
		StudyYear: r.IntN(3),
		Age:       55 + r.IntN(20),
		Gender:    pick(r, []string{"1", "2"}, []float64{0.59, 0.41}),
		Race:      pick(r, []string{"1", "2", "3", "6", "7"}, []float64{0.88, 0.05, 0.03, 0.02, 0.02}),
		Cigsmok:   pick(r, []string{"1", "0"}, []float64{0.58, 0.42}),
	}
	p.StudyDate = fmt.Sprintf("%d0102", 1999+p.StudyYear)
	p.CT = planSeries(seed, i, r)
	p.SR = srRef{
		SeriesUID: uid(seed, "sr-series", i), SOPUID: uid(seed, "sr-sop", i),
		CRDCSeries: crdcUUID(seed, "crdc-sr-series", i), CRDCInstance: crdcUUID(seed, "crdc-sr-instance", i),
		SeriesNumber: p.CT.SeriesNumber + 100, // as the Sybil SRs do
	}
	p.Body, p.Lungs = planAnatomy(&p.CT, r)

	// One tumour per patient; about one patient in six has a second one, of another kind, in
	// the other lung, so the cohort stage sees series with several lesions.
	first := planTumour(0, kind, p, r)
	if first == nil {
		return nil // cannot happen with the lungs planned above: the smallest tumours always fit
	}
	p.Tumours = append(p.Tumours, first)
	if r.Float64() < 1.0/6 {
		other := Kinds()[(slices.Index(Kinds(), kind)+1+r.IntN(2))%3]
		if t := planTumour(1, other, p, r); t != nil {
			p.Tumours = append(p.Tumours, t)
		}
	}
	p.Vessels = planVessels(p, r)
	p.DeType, p.DeStag = planDiagnosis(r, p.Tumours[0])
	return p
}

func planSeries(seed int64, i int, r *rand.Rand) ctSeries {
	s := ctSeries{
		UID:              uid(seed, "ct-series", i),
		FrameOfReference: uid(seed, "frame", i),
		CRDCSeries:       crdcUUID(seed, "crdc-ct-series", i),
		SeriesNumber:     2 + r.IntN(3),
		Rows:             256,
		Cols:             256,
		Spacing:          round(0.70+0.10*r.Float64(), 3),
		Thickness:        pick(r, []float64{1.25, 1.5, 2.0, 2.5}, []float64{0.25, 0.15, 0.25, 0.35}),
		Order:            pick(r, []string{OrderDescending, OrderAscending, OrderShuffled}, []float64{0.6, 0.25, 0.15}),
		NoiseHU:          10 + 15*r.Float64(),
		NoiseKey:         r.Uint64(),
	}
	n := int(math.Round((180 + 40*r.Float64()) / s.Thickness))
	n = min(max(n, 80), 160)
	switch v := r.Float64(); {
	case v < 0.35:
		s.Signed, s.Intercept, s.BitsStored = true, 0, 16
	case v < 0.5:
		s.Signed, s.Intercept, s.BitsStored = true, -1024, 16
	default:
		s.Signed, s.Intercept, s.BitsStored = false, -1024, 12
	}
	// The field of view is centred near the body's centre (0, 0); the table height and
	// scan range vary per patient.
	half := float64(s.Cols-1) / 2 * s.Spacing
	s.Origin = [3]float64{
		round(-half+4*r.Float64()-2, 3),
		round(-half+4*r.Float64()-2, 3),
		round(-150-200*r.Float64(), 2),
	}
	s.Instances = make([]ctInstance, n)
	numbers := make([]int, n)
	for k := range numbers {
		switch s.Order {
		case OrderAscending:
			numbers[k] = k + 1
		default:
			numbers[k] = n - k
		}
	}
	if s.Order == OrderShuffled {
		r.Shuffle(n, func(a, b int) { numbers[a], numbers[b] = numbers[b], numbers[a] })
	}
	for k := range s.Instances {
		s.Instances[k] = ctInstance{
			SOPUID:       uid(seed, "ct-sop", i, k),
			CRDCInstance: crdcUUID(seed, "crdc-ct-instance", i, k),
			Number:       numbers[k],
		}
	}
	return s
}

// body is the elliptic cylinder of the trunk; lung is a superellipsoid.
type body struct {
	C    [2]float64 // centre x, y
	A, B float64    // semi-axes along x (left-right) and y (anterior-posterior)
	RibPhase,
	RibPeriod float64
	NoiseKey uint64
}

type lung struct {
	C [3]float64
	R [3]float64 // semi-axes; the z term has exponent 4, so the lung is nearly cylindrical
}

// s is the lung's shape function: < 1 inside. The exponents (3 in plane, 4 along z) make
// the lung a rounded box rather than an ellipsoid, so that a cubic crop around a tumour in
// its middle stays in the lung.
func (l *lung) s(x, y, z float64) float64 {
	dx, dy, dz := math.Abs(x-l.C[0])/l.R[0], math.Abs(y-l.C[1])/l.R[1], (z-l.C[2])/l.R[2]
	dz *= dz
	return dx*dx*dx + dy*dy*dy + dz*dz
}

func planAnatomy(s *ctSeries, r *rand.Rand) (body, [2]lung) {
	b := body{
		C: [2]float64{r.Float64()*4 - 2, r.Float64()*4 - 2},
		// The trunk's size is in mm, not a fraction of the field of view, and varies little:
		// the crops around tumours then hold about the same anatomy in every patient.
		A:         92 + 2*r.Float64(),
		B:         70 + 2*r.Float64(),
		RibPhase:  30 * r.Float64(),
		RibPeriod: 26 + 6*r.Float64(),
		NoiseKey:  r.Uint64(),
	}
	n := len(s.Instances)
	zMid := s.z(0) + float64(n-1)*s.Thickness/2
	zHalf := float64(n-1) * s.Thickness / 2
	var ls [2]lung
	for side, sign := range []float64{-1, 1} { // right lung at −x (LPS), left at +x
		// Wide lungs (the trunk is scaled to the small field of view, the lungs less so):
		// a 64 mm crop around a tumour in the middle of a lung stays in the lung.
		w := 40.0
		ls[side] = lung{
			C: [3]float64{b.C[0] + sign*(w+4), b.C[1] + 0.02*b.B, zMid + zHalf*(0.05*r.Float64()-0.02)},
			R: [3]float64{w, 0.8 * b.B, zHalf * (0.88 + 0.06*r.Float64())},
		}
	}
	return b, ls
}

// pick draws one of values with the given weights.
func pick[T any](r *rand.Rand, values []T, weights []float64) T {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	u := r.Float64() * sum
	for i, w := range weights {
		if u < w {
			return values[i]
		}
		u -= w
	}
	return values[len(values)-1]
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// planDiagnosis draws the ICD-O-3 morphology and AJCC stage, loosely tied to the tumour as in
// screening cohorts: subsolid lesions are mostly adenocarcinomas of early stage, larger solid
// ones include squamous and small-cell carcinomas and later stages.
func planDiagnosis(r *rand.Rand, t *tumour) (deType, deStag string) {
	switch t.Kind {
	case KindGroundGlass:
		deType = pick(r, []string{"8140", "8250", "8252", "8255"}, []float64{0.4, 0.3, 0.2, 0.1})
	case KindPartSolid:
		deType = pick(r, []string{"8140", "8255", "8250", "8480"}, []float64{0.5, 0.2, 0.2, 0.1})
	default:
		deType = pick(r, []string{"8140", "8070", "8041", "8012", "8046", "8560"}, []float64{0.35, 0.3, 0.12, 0.08, 0.1, 0.05})
	}
	d := t.Diameter
	switch {
	case deType == "8041" && r.Float64() < 0.7:
		deStag = pick(r, []string{"310", "320", "400"}, []float64{0.3, 0.3, 0.4})
	case d < 20:
		deStag = pick(r, []string{"110", "120", "210"}, []float64{0.8, 0.15, 0.05})
	case d < 30:
		deStag = pick(r, []string{"110", "120", "210", "310"}, []float64{0.3, 0.45, 0.15, 0.1})
	default:
		deStag = pick(r, []string{"120", "220", "310", "320", "400"}, []float64{0.2, 0.3, 0.25, 0.1, 0.15})
	}
	return deType, deStag
}

// sortedBy returns a copy of s sorted by key.
func sortedBy[T any, K cmp.Ordered](s []T, key func(T) K) []T {
	out := slices.Clone(s)
	slices.SortStableFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return out
}
