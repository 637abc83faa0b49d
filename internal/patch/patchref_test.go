package patch_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/patch"
	"connectome/internal/testenv"
	"connectome/models"
)

// needPatchref returns the patchref.py directory, skipping (or failing under CI) when the
// shared reference or Debian's python3-numpy/python3-pydicom is missing.
func needPatchref(t *testing.T) string {
	t.Helper()
	dir := testenv.Shared(t, "tools")
	miss := func(why string) {
		testenv.Missing(t, "patchref comparison cannot run: %s", why)
	}
	if _, err := os.Stat(filepath.Join(dir, "patchref.py")); err != nil {
		miss("../shared/tools/patchref.py is missing")
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import numpy, pydicom").CombinedOutput(); err != nil {
		miss(fmt.Sprintf("/usr/bin/python3 lacks numpy/pydicom (apt-get install python3-numpy python3-pydicom): %s", out))
	}
	return dir
}

func phantom(i, j, k int) float64 {
	// smooth + structure, with values beyond both HU windows
	return float64((37*i+101*j+53*k)%2000 - 1000)
}

type refCase struct {
	name   string
	series dicomsynth.Series
	seeds  [][3]float64 // LPS
	// ties to assert: model → expected seed index (the §0 tie paths)
	wantC map[string][3]int
	wantM map[string][3]int
}

// voxel is the LPS position of voxel (i, j, k) of an axial ascending series with float32
// geometry (what the reader will compute).
func voxel(s dicomsynth.Series, i, j, k float64) [3]float64 {
	q := func(v float64) float64 { return float64(float32(v)) }
	return [3]float64{
		q(s.Origin[0]) + i*q(s.PixelSpacing[1]),
		q(s.Origin[1]) + j*q(s.PixelSpacing[0]),
		q(s.Origin[2]) + k*q(s.SliceSpacing),
	}
}

func refCases() []refCase {
	base := dicomsynth.Series{
		Rows: 56, Columns: 64, Slices: 30,
		PixelSpacing: [2]float64{0.8, 0.703125}, SliceSpacing: 2.5,
		Origin: [3]float64{-33.75, -120.5, -250}, Intercept: -1024, HU: phantom,
	}
	edgeSeeds := func(s dicomsynth.Series) [][3]float64 {
		nx, ny, nz := float64(s.Columns), float64(s.Rows), float64(s.Slices)
		return [][3]float64{
			voxel(s, nx/2+0.3, ny/2-0.2, nz/2+0.4), // interior
			voxel(s, 1, 1, 1),                      // next to the low corner
			voxel(s, nx-2, ny-1, nz-1),             // next to the high corner (on a voxel centre)
			voxel(s, -1.5, ny/2, nz/2),             // just outside, low x
			voxel(s, nx/2, ny+0.7, nz/2),           // just outside, high y
			voxel(s, nx/2, ny/2, nz+1.2),           // just outside, high z
			voxel(s, -3, -2, -1),                   // outside the low corner
			voxel(s, nx/2, ny/2, nz+200),           // far outside: both must refuse
			voxel(s, 10, 20, 7),                    // a voxel centre (index ties)
		}
	}
	var out []refCase
	c := base
	out = append(out, refCase{name: "ascending-explicit-unsigned", series: c, seeds: edgeSeeds(c)})
	c = base
	c.Descending, c.Shuffle, c.Signed, c.Intercept, c.Implicit = true, 11, true, 0, true
	out = append(out, refCase{name: "descending-shuffled-signed-implicit", series: c, seeds: edgeSeeds(c)})
	c = base
	c.Slope, c.Intercept, c.Shuffle = 0.5, -1000, 5
	out = append(out, refCase{name: "slope-intercept", series: c, seeds: edgeSeeds(c)})
	// shape tie (spec §0.4): 150 slices at 2.5 mm: 149·2.5 + 1 = 373.5 → 374
	c = base
	c.Rows, c.Columns, c.Slices, c.PixelSpacing = 24, 24, 150, [2]float64{0.9765625, 0.9765625}
	out = append(out, refCase{name: "shape-tie", series: c,
		seeds: [][3]float64{voxel(c, 12, 11, 80), voxel(c, 3, 20, 148)},
		wantM: map[string][3]int{"CTFM": {23, 23, 374}}})
	// seed-index tie (spec §0.5, golden G4): CT-CLIP truncates 59.999999999999986 to 59
	c = base
	c.Rows, c.Columns, c.Slices = 96, 64, 35
	c.PixelSpacing, c.SliceSpacing = [2]float64{0.703125, 0.703125}, 1.25
	c.Origin = [3]float64{-229.3312988, -157.4597778, 303.3752441}
	out = append(out, refCase{name: "seed-tie", series: c,
		seeds: [][3]float64{{-196.284423828125, -135.66290283203125, 325.875244140625}},
		wantC: map[string][3]int{"CTClipVit": {7, 59, 30}}})
	return out
}

type refOut struct {
	M, C, Lo, Hi []int
	Error        string
}

func ulps(a, b float32) int64 {
	ord := func(f float32) int64 {
		u := int64(int32(math.Float32bits(f)))
		if u < 0 {
			u = math.MinInt32 - u
		}
		return u
	}
	d := ord(a) - ord(b)
	if d < 0 {
		d = -d
	}
	return d
}

func TestAgainstPatchref(t *testing.T) {
	prDir := needPatchref(t)
	reg, err := models.Load(testenv.File(t, "configs", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	driver := testenv.File(t, "internal", "patch", "testdata", "patchref_driver.py")
	var worst int64
	compared := 0
	for _, rc := range refCases() {
		t.Run(rc.name, func(t *testing.T) {
			dir := t.TempDir()
			dcm := filepath.Join(dir, "dicom")
			if _, err := rc.series.Write(dcm); err != nil {
				t.Fatal(err)
			}
			type job struct {
				Name  string     `json:"name"`
				Model string     `json:"model"`
				Seed  [3]float64 `json:"seed"`
			}
			var jobs []job
			for si, seed := range rc.seeds {
				for _, m := range reg.Models {
					jobs = append(jobs, job{fmt.Sprintf("s%d_%s", si, m.Name), m.Name, seed})
				}
			}
			jb, _ := json.Marshal(jobs)
			jobsPath := filepath.Join(dir, "jobs.json")
			os.WriteFile(jobsPath, jb, 0o644)
			outDir := filepath.Join(dir, "out")
			os.MkdirAll(outDir, 0o755)
			if out, err := exec.Command("/usr/bin/python3", driver, prDir, dcm, jobsPath, outDir).CombinedOutput(); err != nil {
				t.Fatalf("patchref: %v\n%s", err, out)
			}
			ser, _, err := dicomio.ReadSeriesDir(dcm)
			if err != nil {
				t.Fatal(err)
			}
			g := ser.Geometry
			full, _, err := ser.LoadBox([3]int{}, [3]int{g.Size[0] - 1, g.Size[1] - 1, g.Size[2] - 1})
			if err != nil {
				t.Fatal(err)
			}
			var preps []models.Preprocess
			for _, m := range reg.Models {
				preps = append(preps, m.Preprocess)
			}
			for si, seed := range rc.seeds {
				// all models at once, sharing grids, from only the slices they need
				all, allErr := patch.NewPlanner(g, seed, preps)
				var allT []*patch.Tensor
				if allErr == nil {
					lo, hi, _ := all.InputBox()
					vol, _, err := ser.LoadBox(lo, hi)
					if err != nil {
						t.Fatal(err)
					}
					if allT, _, err = all.Extract(vol); err != nil {
						t.Fatal(err)
					}
				}
				for mi, m := range reg.Models {
					name := fmt.Sprintf("s%d_%s", si, m.Name)
					var ref refOut
					rb, err := os.ReadFile(filepath.Join(outDir, name+".json"))
					if err != nil {
						t.Fatal(err)
					}
					json.Unmarshal(rb, &ref)
					pr, err := patch.NewPlanner(g, seed, []models.Preprocess{m.Preprocess})
					if ref.Error != "" || err != nil {
						if ref.Error == "" || !errors.Is(err, patch.ErrSeedOutside) {
							t.Errorf("%s: Go error %v, patchref error %q", name, err, ref.Error)
						}
						if allErr == nil {
							t.Errorf("%s: the all-model planner accepted a seed one model refuses", name)
						}
						continue
					}
					pl := pr.Plans[0]
					if got := [4][3]int{pl.Grid.M, pl.C, pl.Lo, pl.Hi}; got != [4][3]int{to3(ref.M), to3(ref.C), to3(ref.Lo), to3(ref.Hi)} {
						t.Errorf("%s: m,c,lo,hi %v; patchref %v %v %v %v", name, got, ref.M, ref.C, ref.Lo, ref.Hi)
					}
					if w, ok := rc.wantC[m.Name]; ok && pl.C != w {
						t.Errorf("%s: seed index %v, want the tie path's %v", name, pl.C, w)
					}
					if w, ok := rc.wantM[m.Name]; ok && pl.Grid.M != w {
						t.Errorf("%s: grid %v, want the shape tie's %v", name, pl.Grid.M, w)
					}
					lo, hi, _ := pr.InputBox()
					vol, _, err := ser.LoadBox(lo, hi)
					if err != nil {
						t.Fatal(err)
					}
					tns, _, err := pr.Extract(vol)
					if err != nil {
						t.Fatal(err)
					}
					tn := tns[0]
					f, err := os.Open(filepath.Join(outDir, name+".npy"))
					if err != nil {
						t.Fatal(err)
					}
					shape, want, err := patch.ReadNPY(f)
					f.Close()
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(shape) != fmt.Sprint([]int{1, tn.Shape[2], tn.Shape[3], tn.Shape[4]}) {
						t.Fatalf("%s: shape %v, patchref %v", name, tn.Shape, shape)
					}
					var maxU int64
					for i := range want {
						maxU = max(maxU, ulps(tn.Data[i], want[i]))
					}
					worst = max(worst, maxU)
					compared++
					if maxU > 1 {
						t.Errorf("%s: max difference %d ulp", name, maxU)
					}
					// the all-model planner gives the same tensor
					if allT != nil {
						for i := range tn.Data {
							if allT[mi].Data[i] != tn.Data[i] {
								t.Errorf("%s: shared-grid extraction differs at %d", name, i)
								break
							}
						}
					}
					// crop-only equals the whole-volume path, bit for bit
					wt, err := wholeVolume(g, seed, m.Preprocess, full)
					if err != nil {
						t.Fatal(err)
					}
					for i := range tn.Data {
						if wt.Data[i] != tn.Data[i] {
							t.Errorf("%s: whole-volume path differs at %d: %v vs %v", name, i, wt.Data[i], tn.Data[i])
							break
						}
					}
				}
			}
		})
	}
	t.Logf("compared %d tensors with patchref: max difference %d ulp", compared, worst)
}

// wholeVolume is the reference's own order of work: resample the entire grid from the entire
// volume with the per-voxel (non-separable) formula, then crop.
func wholeVolume(g patch.Geometry, seedLPS [3]float64, p models.Preprocess, vol *patch.Volume) (*patch.Tensor, error) {
	if vol.Lo != [3]int{} || vol.Dim != vol.Size || vol.Size != g.Size {
		return nil, fmt.Errorf("whole volume: need the full volume %v, have %v+%v", g.Size, vol.Lo, vol.Dim)
	}
	pl, err := patch.NewPlan(g, seedLPS, p)
	if err != nil {
		return nil, err
	}
	full, err := patch.SamplePerVoxel(pl.Grid, vol, [3]int{}, pl.Grid.M)
	if err != nil {
		return nil, err
	}
	return pl.Finish(full)
}

func to3(v []int) [3]int {
	var o [3]int
	copy(o[:], v)
	return o
}
