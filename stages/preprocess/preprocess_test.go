package preprocess_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/layout"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/preprocess"
)

func phantom(i, j, k int) float64 {
	// a 6 mm-ish "tumour" of 40 HU in −850 HU lung
	di, dj, dk := float64(i-24), float64(j-22), float64(k-8)*3
	if di*di+dj*dj+dk*dk < 64 {
		return 40
	}
	return -850
}

// writeSeries writes a series and returns instance rows for it; cache=true stores the files
// in the fetch cache layout instead of setting LocalPath.
func writeSeries(t *testing.T, dir, uid string, s dicomsynth.Series, cache bool) []tables.Instance {
	t.Helper()
	s.SeriesUID = uid
	// geometry from an unbroken copy (as the cohort table would have it), files as asked
	clean := s
	clean.Edit = nil
	cleanDir := filepath.Join(t.TempDir(), uid)
	if _, err := clean.Write(cleanDir); err != nil {
		t.Fatal(err)
	}
	ser, _, err := dicomio.ReadSeriesDir(cleanDir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), uid)
	if _, err := s.Write(tmp); err != nil {
		t.Fatal(err)
	}
	var rows []tables.Instance
	for i, h := range ser.Slices {
		h.Path = filepath.Join(tmp, filepath.Base(h.Path))
		r := tables.Instance{SeriesInstanceUID: uid, SOPInstanceUID: h.SOPInstanceUID,
			InstanceNumber: int32(h.InstanceNumber), ImagePositionPatient: h.IPP, ImageOrientationPatient: h.IOP,
			PixelSpacing: h.PixelSpacing, Rows: int32(h.Rows), Columns: int32(h.Columns)}
		if cache {
			r.CRDCSeriesUUID, r.CRDCInstanceUUID = uuidOf("series "+uid), uuidOf("instance "+h.SOPInstanceUID)
			dst := filepath.Join(dir, r.CRDCSeriesUUID, r.CRDCInstanceUUID+".dcm")
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := os.Rename(h.Path, dst); err != nil {
				t.Fatal(err)
			}
		} else {
			r.LocalPath = h.Path
		}
		_ = i
		rows = append(rows, r)
	}
	return rows
}

func TestStage(t *testing.T) {
	reg, err := models.Load(testenv.File(t, "configs", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	run := t.TempDir()
	cache := filepath.Join(run, "dicom")
	base := dicomsynth.Series{Rows: 48, Columns: 48, Slices: 18, PixelSpacing: [2]float64{0.8, 0.8},
		SliceSpacing: 2.5, Origin: [3]float64{-20, -20, -100}, Intercept: -1024, HU: phantom}
	var inst []tables.Instance
	inst = append(inst, writeSeries(t, cache, "2.25.100", base, false)...)
	inst = append(inst, writeSeries(t, cache, "2.25.200", base, true)...)
	broken := base
	broken.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
		for i, x := range e {
			if x.Tag == tag.TransferSyntaxUID {
				e[i], _ = dicom.NewElement(tag.TransferSyntaxUID, []string{"1.2.840.10008.1.2.4.50"})
			}
		}
		return e
	}
	inst = append(inst, writeSeries(t, cache, "2.25.300", broken, false)...)
	seed := [3]float64{-20 + 24*0.8, -20 + 22*0.8, -100 + 8*2.5}
	lesions := []tables.Lesion{
		{LesionID: "L1", SeriesInstanceUID: "2.25.100", CenterMM: seed,
			BoxMinMM: [3]float64{seed[0] - 5, seed[1] - 5, seed[2] - 5}, BoxMaxMM: [3]float64{seed[0] + 5, seed[1] + 5, seed[2] + 5}},
		{LesionID: "L2", SeriesInstanceUID: "2.25.200", CenterMM: seed},
		{LesionID: "L3", SeriesInstanceUID: "2.25.100", CenterMM: [3]float64{0, 0, 500}}, // far outside
		{LesionID: "L4", SeriesInstanceUID: "2.25.300", CenterMM: seed},                  // JPEG label, native pixels
		{LesionID: "L5", SeriesInstanceUID: "2.25.999", CenterMM: seed},                  // no instances
	}
	if err := tables.WriteLesions(layout.New(run, pipeline.Shard{}).Lesions(), lesions, arrow.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if err := tables.WriteInstances(layout.New(run, pipeline.Shard{}).Instances(), inst, arrow.Metadata{}); err != nil {
		t.Fatal(err)
	}
	lay := layout.New(run, pipeline.Shard{})
	set := preprocess.DefaultSettings()
	set.CacheDir, set.Workers = cache, 2
	runOnce := func(resume bool) *pipeline.Summary {
		r, err := pipeline.NewRunner([]pipeline.Stage{preprocess.New(set, reg)}, pipeline.Options{RunDir: run, Resume: resume, Items: tables.LesionItems(lay.Lesions(), lay.Instances())})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	sum := runOnce(false)
	if sum.Failures != 3 {
		t.Errorf("failures %d, want 3", sum.Failures)
	}
	fails, err := pipeline.ReadFailures(filepath.Join(run, "failures.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	wantClass := map[string]string{"L3": pipeline.ClassGeometry, "L4": pipeline.ClassDICOM, "L5": pipeline.ClassNotFound}
	for _, f := range fails {
		if wantClass[f.ItemID] != f.ErrorClass {
			t.Errorf("failure %s: class %s (%s), want %s", f.ItemID, f.ErrorClass, f.Message, wantClass[f.ItemID])
		}
	}
	stageDir := lay.StageDir(layout.Preprocess)
	rows, _, err := tables.ReadPatches(lay.Patches())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2*len(reg.Models) {
		t.Fatalf("%d patch rows, want %d", len(rows), 2*len(reg.Models))
	}
	// L1 (local files) and L2 (cache layout) are the same image: same tensors
	for i, r := range rows[:len(reg.Models)] {
		r2 := rows[len(reg.Models)+i]
		if r.SHA256 != r2.SHA256 || r.Model != r2.Model {
			t.Errorf("%s: L1 and L2 differ", r.Model)
		}
		if r.MeanHU10mm < -100 || r.SeedInAir {
			t.Errorf("%s: mean HU %.1f at the tumour, air %v", r.Model, r.MeanHU10mm, r.SeedInAir)
		}
		f, err := os.Open(lay.Tensor(r.Model, "L1"))
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := patch.ReadNPY(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := reg.Get(r.Model)
		want := spec.InputShape(1)
		if len(shape) != 5 || int64(shape[2]) != want[2] || int64(shape[4]) != want[4] || len(data) != int(want[2]*want[3]*want[4]) {
			t.Errorf("%s: shape %v, want %v", r.Model, shape, want)
		}
	}
	pngb, err := os.ReadFile(layout.New(run, pipeline.Shard{}).QCPreview("L1"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(pngb))
	if err != nil || img.Bounds().Dx() != 384 || img.Bounds().Dy() != 128 {
		t.Fatalf("qc png: %v %v", err, img.Bounds())
	}
	// the seed mark is red, the box green
	var red, green int
	for y := 0; y < 128; y++ {
		for x := 0; x < 384; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 == 255 && g>>8 == 40 && b>>8 == 40 {
				red++
			}
			if r>>8 == 40 && g>>8 == 220 {
				green++
			}
		}
	}
	if red == 0 || green == 0 {
		t.Errorf("qc png: %d seed pixels, %d box pixels", red, green)
	}

	// an interrupted stage (no marker) resumes per lesion: finished ones are not redone
	tp := lay.Tensor("CTFM", "L1")
	before, _ := os.Stat(tp)
	if err := os.Remove(filepath.Join(stageDir, pipeline.MarkerFile)); err != nil {
		t.Fatal(err)
	}
	sum = runOnce(true)
	after, _ := os.Stat(tp)
	if !before.ModTime().Equal(after.ModTime()) {
		t.Error("resume rewrote a finished lesion's tensor")
	}
	if sum.Stages[0].Counts["skipped"] != 2 {
		t.Errorf("resume counts %v, want 2 skipped", sum.Stages[0].Counts)
	}
	rows2, _, err := tables.ReadPatches(lay.Patches())
	if err != nil || len(rows2) != len(rows) {
		t.Errorf("patches after resume: %d rows, %v", len(rows2), err)
	}
}

// uuidOf makes a CRDC-style uuid (as IDC names its objects) from a name.
func uuidOf(name string) string {
	h := sha256.Sum256([]byte(name))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
