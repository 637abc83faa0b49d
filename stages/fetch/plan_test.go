package fetch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/stages/preprocess"
)

// axialSeries is n slices at spacing mm, listed in random order; flip reverses the slice
// direction's sign in IOP terms (rows toward −x), as some scanners write.
func axialSeries(r *rand.Rand, n int, spacing, z0 float64, flip bool) []tables.Instance {
	iop := [6]float64{1, 0, 0, 0, 1, 0}
	if flip {
		iop = [6]float64{-1, 0, 0, 0, -1, 0} // normal still +z, rows and columns reversed
	}
	rows := make([]tables.Instance, n)
	for k := range rows {
		rows[k] = tables.Instance{
			SeriesInstanceUID: "1.2.3", SOPInstanceUID: fmt.Sprintf("1.2.3.%d", k),
			ImagePositionPatient:    [3]float64{-175.5, -190.25, z0 + float64(k)*spacing},
			ImageOrientationPatient: iop, PixelSpacing: [2]float64{0.68359375, 0.68359375}, Rows: 512, Columns: 512,
		}
	}
	r.Shuffle(n, func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	return rows
}

// The conservative window must contain the exact input box for every model, on every
// geometry and seed, or the fallback would fetch too little.
func TestWindowPlannerContainsExact(t *testing.T) {
	reg, err := models.Load(testenv.File(t, "configs/models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	specs, _ := reg.Select(nil)
	specs = append(specs, &testRegistry(t).Models[1], // plus a 0.75 mm-along-S crop
		&models.Spec{Name: "qc", Preprocess: preprocess.QCCrop()})
	r := rand.New(rand.NewPCG(3, 4))
	checked, extra := 0, 0
	for trial := 0; trial < 300; trial++ {
		spacing := []float64{0.625, 1, 1.25, 2, 2.5, 3, 5}[r.IntN(7)]
		n := 30 + r.IntN(300)
		z0 := -300 + r.Float64()*100
		series := axialSeries(r, n, spacing, z0, r.IntN(2) == 0)
		// seeds inside, near the ends, and a little outside the volume
		z := z0 + (r.Float64()*1.2-0.1)*float64(n-1)*spacing
		seed := [3]float64{-175.5 + r.Float64()*350, -190.25 + r.Float64()*350, z}
		for _, sp := range specs {
			exact, eerr := PatchPlanner{}.NeededSlices(series, seed, sp.Preprocess)
			if eerr != nil {
				if !errors.Is(eerr, patch.ErrSeedOutside) {
					t.Fatalf("exact plan: %v", eerr)
				}
				continue
			}
			win, werr := WindowPlanner{}.NeededSlices(series, seed, sp.Preprocess)
			if werr != nil {
				t.Fatal(werr)
			}
			for _, u := range exact {
				if !slices.Contains(win, u) {
					t.Fatalf("trial %d model %s (n %d, %.3g mm, seed z %.2f): exact slice %s not in the window %v",
						trial, sp.Name, n, spacing, z, u, win)
				}
			}
			checked++
			extra += len(win) - len(exact)
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d plans checked", checked)
	}
	t.Logf("%d plans: the window fetches %.1f slices more than the exact plan on average", checked, float64(extra)/float64(checked))
}

// The exact plan of a 48 mm crop at 2.5 mm is about 48/2.5 + 2 slices; the union over the
// registry's models is still well under a quarter of a 300-slice series.
func TestPatchPlannerSize(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	series := axialSeries(r, 300, 2.5, -400, false)
	reg := testRegistry(t)
	seed := [3]float64{10, 20, -400 + 150*2.5 + 0.3}
	cube, err := PatchPlanner{}.NeededSlices(series, seed, reg.Models[0].Preprocess)
	if err != nil {
		t.Fatal(err)
	}
	if len(cube) < 19 || len(cube) > 23 {
		t.Errorf("48 mm at 2.5 mm reads %d slices, want about 21", len(cube))
	}
	// contiguous in position
	pos := map[string]float64{}
	for _, in := range series {
		pos[in.SOPInstanceUID] = in.ImagePositionPatient[2]
	}
	var zs []float64
	for _, u := range cube {
		zs = append(zs, pos[u])
	}
	slices.Sort(zs)
	for i := 1; i < len(zs); i++ {
		if math.Abs(zs[i]-zs[i-1]-2.5) > 1e-9 {
			t.Fatalf("slices not contiguous: %v", zs)
		}
	}
	if zs[0] > seed[2]-22 || zs[len(zs)-1] < seed[2]+22 {
		t.Errorf("slices %.1f..%.1f do not cover the seed %.1f ± 24 mm", zs[0], zs[len(zs)-1], seed[2])
	}

	full, _ := models.Load(testenv.File(t, "configs/models.yaml"))
	specs, _ := full.Select(nil)
	les := tables.Lesion{LesionID: "x", CenterMM: seed}
	sops, modelErrs, err := planSlices(PatchPlanner{}, series, les, cropsOf(specs, []models.Preprocess{preprocess.QCCrop()}))
	if err != nil || len(modelErrs) > 0 {
		t.Fatal(err, modelErrs)
	}
	if frac := float64(len(sops)) / 300; frac >= 0.25 {
		t.Errorf("union over %d models reads %.1f%% of the series", len(specs), 100*frac)
	}
}

func TestPlanLesionSeedOutside(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	series := axialSeries(r, 50, 2.5, 0, false)
	specs, _ := testRegistry(t).Select(nil)
	// far outside along z: every model's window is empty
	_, errs, err := planSlices(PatchPlanner{}, series, tables.Lesion{CenterMM: [3]float64{0, 0, 900}}, cropsOf(specs, nil))
	if !errors.Is(err, patch.ErrSeedOutside) || len(errs) != 2 {
		t.Errorf("err = %v (%d model errors), want seed outside for both", err, len(errs))
	}
	// a series of one slice has no geometry
	_, _, err = planSlices(PatchPlanner{}, series[:1], tables.Lesion{}, cropsOf(specs, nil))
	if err == nil {
		t.Error("one-slice series planned")
	}
}

func TestSettingsValidate(t *testing.T) {
	ok := DefaultSettings()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Settings){
		"source ":         func(s *Settings) { s.Source = "s3" },
		"concurrency ":    func(s *Settings) { s.Concurrency = 0 },
		"retries ":        func(s *Settings) { s.Retries = -1 },
		"object_timeout ": func(s *Settings) { s.ObjectTimeout = "soon" },
		"min_free_bytes ": func(s *Settings) { s.MinFreeBytes = -5 },
	}
	for want, mut := range cases {
		s := DefaultSettings()
		mut(&s)
		if err := s.Validate(); err == nil || !containsStr(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
	s := DefaultSettings()
	s.ObjectTimeout = "0s"
	if s.Validate() == nil {
		t.Error("zero object_timeout accepted")
	}
}

// Without geometry in the table the whole series is planned: preprocess reads every header.
func TestPlanLesionWithoutGeometry(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	series := axialSeries(r, 40, 2.5, 0, false)
	for i := range series {
		series[i].Rows, series[i].Columns, series[i].PixelSpacing = 0, 0, [2]float64{}
	}
	specs, _ := testRegistry(t).Select(nil)
	sops, notes, err := planSlices(PatchPlanner{}, series, tables.Lesion{CenterMM: [3]float64{0, 0, 50}}, cropsOf(specs, nil))
	if err != nil || len(sops) != 40 || len(notes) != 1 {
		t.Errorf("got %d slices, notes %v, err %v; want the whole series of 40", len(sops), notes, err)
	}
}
