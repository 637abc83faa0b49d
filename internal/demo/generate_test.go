package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomwrite"
	"connectome/internal/sr"
	"connectome/internal/testenv"
)

// The shared small cohort: seed 1 with 3 patients covers all three storage orders, signed and
// unsigned pixels, all three kinds and a patient with two tumours (TestSmallCohortVariety).
const (
	smallSeed     = 1
	smallPatients = 3
)

var (
	smallOnce sync.Once
	smallDir  string
	smallMan  *Manifest
	smallErr  error
)

func smallCohort(t *testing.T) *Manifest {
	t.Helper()
	smallOnce.Do(func() {
		smallDir, smallErr = os.MkdirTemp("", "demo-cohort-")
		if smallErr == nil {
			smallMan, smallErr = Generate(context.Background(), smallDir, Options{Seed: smallSeed, Patients: smallPatients})
		}
	})
	if smallErr != nil {
		t.Fatal(smallErr)
	}
	return smallMan
}

func smallPlan() []*patient {
	ps, err := plan(Options{Seed: smallSeed, Patients: smallPatients}.withDefaults())
	if err != nil {
		panic(err)
	}
	return ps
}

var uidRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

func TestDefaultCohortVariety(t *testing.T) {
	ps, err := plan(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != DefaultPatients {
		t.Fatalf("%d patients, want %d", len(ps), DefaultPatients)
	}
	firstKinds := map[string]int{}
	seen := map[string]map[string]bool{"order": {}, "signed": {}, "kind": {}, "texture": {}, "thickness": {}}
	uids := map[string]bool{}
	twoTumours := 0
	minD, maxD := math.Inf(1), math.Inf(-1)
	for _, p := range ps {
		s := &p.CT
		if n := len(s.Instances); n < 80 || n > 160 {
			t.Errorf("%s: %d slices, want 80..160", p.PatientID, n)
		}
		if s.Spacing < 0.7 || s.Spacing > 0.8 || s.Rows != 256 || s.Cols != 256 {
			t.Errorf("%s: %d×%d at %g mm, want 256×256 at 0.7–0.8 mm", p.PatientID, s.Rows, s.Cols, s.Spacing)
		}
		if s.Thickness < 1.25 || s.Thickness > 2.5 {
			t.Errorf("%s: slice thickness %g, want 1.25–2.5 mm", p.PatientID, s.Thickness)
		}
		seen["order"][s.Order] = true
		seen["signed"][map[bool]string{true: "signed", false: "unsigned"}[s.Signed]] = true
		seen["thickness"][dicomwrite.DS(s.Thickness)] = true
		firstKinds[p.Tumours[0].Kind]++
		if len(p.Tumours) > 1 {
			twoTumours++
		}
		for _, tu := range p.Tumours {
			seen["kind"][tu.Kind] = true
			seen["texture"][tu.Texture] = true
			minD, maxD = min(minD, tu.Diameter), max(maxD, tu.Diameter)
			if !slices.Contains(texturesOf[tu.Kind], tu.Texture) {
				t.Errorf("%s: texture %s is not one of kind %s", p.PatientID, tu.Texture, tu.Kind)
			}
		}
		all := []string{p.StudyUID, s.UID, s.FrameOfReference, p.SR.SeriesUID, p.SR.SOPUID}
		for _, in := range s.Instances {
			all = append(all, in.SOPUID)
		}
		for _, u := range all {
			if len(u) > 64 || !uidRE.MatchString(u) {
				t.Errorf("%s: invalid UID %q", p.PatientID, u)
			}
			if uids[u] {
				t.Errorf("%s: UID %s used twice", p.PatientID, u)
			}
			uids[u] = true
		}
	}
	for _, k := range Kinds() {
		if firstKinds[k] != DefaultPatients/3 {
			t.Errorf("%d patients with a first tumour of kind %s, want %d (balanced)", firstKinds[k], k, DefaultPatients/3)
		}
	}
	want := map[string]int{"order": 3, "signed": 2, "kind": 3, "texture": 8, "thickness": 4}
	for k, n := range want {
		if len(seen[k]) != n {
			t.Errorf("%s: %d distinct values %v, want %d", k, len(seen[k]), seen[k], n)
		}
	}
	if twoTumours == 0 {
		t.Error("no patient has two tumours")
	}
	if minD < 6 || maxD > 40 || maxD-minD < 25 {
		t.Errorf("tumour diameters span %.1f–%.1f mm, want within 6–40 and spread out", minD, maxD)
	}
	t.Logf("diameters %.1f–%.1f mm; %d patients with two tumours", minD, maxD, twoTumours)
}

func TestSmallCohortVariety(t *testing.T) {
	orders, signed, kinds, two := map[string]bool{}, map[bool]bool{}, map[string]bool{}, false
	for _, p := range smallPlan() {
		orders[p.CT.Order], signed[p.CT.Signed] = true, true
		for _, tu := range p.Tumours {
			kinds[tu.Kind] = true
		}
		two = two || len(p.Tumours) > 1
	}
	if len(orders) != 3 || len(signed) != 2 || len(kinds) != 3 || !two {
		t.Fatalf("the small test cohort no longer covers every variant (orders %v, signed %v, kinds %v, two tumours %v): pick another smallSeed",
			orders, signed, kinds, two)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a := smallCohort(t)
	dir := t.TempDir()
	b, err := Generate(context.Background(), dir, Options{Seed: smallSeed, Patients: smallPatients, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Objects) != len(b.Objects) {
		t.Fatalf("%d objects, then %d", len(a.Objects), len(b.Objects))
	}
	for i := range a.Objects {
		if a.Objects[i] != b.Objects[i] {
			t.Fatalf("object %d differs between runs:\n%+v\n%+v", i, a.Objects[i], b.Objects[i])
		}
	}
	for _, f := range []string{ManifestFile, TruthFile, ClinicalFile} {
		x, _ := os.ReadFile(filepath.Join(a.Dir, f))
		y, _ := os.ReadFile(filepath.Join(dir, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between runs", f)
		}
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}

	// Another seed gives another cohort.
	c, err := Generate(context.Background(), t.TempDir(), Options{Seed: smallSeed + 1, Patients: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c.Objects[0].SHA256 == a.Objects[0].SHA256 || c.Objects[0].Key == a.Objects[0].Key {
		t.Error("seeds 1 and 2 gave the same first object")
	}

	// A complete cohort is reused as it is; a damaged one is made again.
	man := filepath.Join(dir, ManifestFile)
	before, _ := os.Stat(man)
	if _, err := Generate(context.Background(), dir, Options{Seed: smallSeed, Patients: smallPatients}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(man); !after.ModTime().Equal(before.ModTime()) {
		t.Error("a complete cohort was generated again")
	}
	victim := b.Path(b.Objects[5])
	if err := os.Truncate(victim, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("Open accepted a truncated object")
	}
	d, err := Generate(context.Background(), dir, Options{Seed: smallSeed, Patients: smallPatients})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(); err != nil {
		t.Fatalf("after regeneration: %v", err)
	}
}

// TestCTReadableByDicomio reads every generated series with the pipeline's own reader and
// compares the decoded HU of every slice with what the phantom drew.
func TestCTReadableByDicomio(t *testing.T) {
	m := smallCohort(t)
	for _, p := range smallPlan() {
		s := &p.CT
		ser, _, err := dicomio.ReadSeriesDir(filepath.Join(m.Dir, ObjectsDir, s.CRDCSeries))
		if err != nil {
			t.Fatalf("%s: %v", p.PatientID, err)
		}
		if len(ser.Slices) != len(s.Instances) {
			t.Fatalf("%s: dicomio sees %d slices, want %d", p.PatientID, len(ser.Slices), len(s.Instances))
		}
		for k, h := range ser.Slices { // ITK order: ascending z, whatever the storage order
			in := s.Instances[k]
			if h.SOPInstanceUID != in.SOPUID || h.InstanceNumber != in.Number || math.Abs(h.IPP[2]-s.z(k)) > 1e-6 {
				t.Fatalf("%s slice %d: got %s #%d z=%g, want %s #%d z=%g", p.PatientID, k,
					h.SOPInstanceUID, h.InstanceNumber, h.IPP[2], in.SOPUID, in.Number, s.z(k))
			}
			if h.PixelRepresentation != map[bool]int{true: 1, false: 0}[s.Signed] || h.Intercept != s.Intercept {
				t.Fatalf("%s: pixel representation %d intercept %g, want signed=%v intercept %g",
					p.PatientID, h.PixelRepresentation, h.Intercept, s.Signed, s.Intercept)
			}
		}
		if ps := ser.Slices[0].PixelSpacing; ps != [2]float64{s.Spacing, s.Spacing} {
			t.Errorf("%s: pixel spacing %v, want %g", p.PatientID, ps, s.Spacing)
		}
		// Whole slices at each tumour centre and at both ends.
		check := []int{0, len(s.Instances) - 1}
		for _, tu := range p.Tumours {
			check = append(check, s.nearestSlice(tu.Centre[2]))
		}
		hu := make([]int16, s.Rows*s.Cols)
		for _, k := range check {
			vol, _, err := ser.LoadBox([3]int{0, 0, k}, [3]int{s.Cols - 1, s.Rows - 1, k})
			if err != nil {
				t.Fatal(err)
			}
			p.renderSlice(k, hu)
			for i, v := range hu {
				if got := vol.Data[i]; got != float32(v) {
					t.Fatalf("%s slice %d pixel (%d,%d): dicomio reads %g HU, the phantom drew %d",
						p.PatientID, k, i%s.Cols, i/s.Cols, got, v)
				}
			}
		}
		// The tumour is where the truth says, with its kind's attenuation (a 3×3 mean at the
		// centre; cavitary centres are air by design).
		for _, tu := range p.Tumours {
			if tu.Texture == TextureCavitary || tu.Texture == TextureNecrotic || tu.Texture == TextureBubbly {
				continue
			}
			k := s.nearestSlice(tu.Centre[2])
			p.renderSlice(k, hu)
			c := int(math.Round((tu.Centre[0] - s.Origin[0]) / s.Spacing))
			r := int(math.Round((tu.Centre[1] - s.Origin[1]) / s.Spacing))
			var mean float64
			for dr := -1; dr <= 1; dr++ {
				for dc := -1; dc <= 1; dc++ {
					mean += float64(hu[(r+dr)*s.Cols+c+dc]) / 9
				}
			}
			lo, hi := -200.0, 400.0 // solid, and the solid core of part-solid
			if tu.Kind == KindGroundGlass {
				lo, hi = -800, -350
			}
			if tu.Texture == TextureCalcified {
				hi = 1000
			}
			if mean < lo || mean > hi {
				t.Errorf("%s: %s (%s, %.1f mm) tumour centre averages %.0f HU, want %g..%g", p.PatientID, tu.Kind, tu.Texture, tu.Diameter, mean, lo, hi)
			}
		}
	}
}

// TestSRRoundTrip reads each SR with the cohort stage's walker and compares it with the
// ground truth.
func TestSRRoundTrip(t *testing.T) {
	m := smallCohort(t)
	truth, err := m.Truth()
	if err != nil {
		t.Fatal(err)
	}
	ctSOPs := map[string]Object{}
	for _, o := range m.Objects {
		if o.Modality == "CT" {
			ctSOPs[o.SOPInstanceUID] = o
		}
	}
	for _, o := range m.Objects {
		if o.Modality != "SR" {
			continue
		}
		ds, err := dicom.ParseFile(m.Path(o), nil)
		if err != nil {
			t.Fatalf("parse SR %s: %v", o.Key, err)
		}
		boxes, err := sr.ParseJSON(srJSON(t, ds, "ContentSequence"))
		if err != nil {
			t.Fatalf("SR %s: %v", o.Key, err)
		}
		var want []TruthBox
		var ctSeries string
		for _, tu := range truth {
			if tu.PatientID == o.PatientID {
				want = append(want, tu.Boxes...)
				ctSeries = tu.SeriesInstanceUID
			}
		}
		slices.SortFunc(want, func(a, b TruthBox) int { return trackingNumber(a.TrackingID) - trackingNumber(b.TrackingID) })
		if len(boxes) != len(want) || len(want) == 0 {
			t.Fatalf("SR %s: %d boxes, truth has %d", o.Key, len(boxes), len(want))
		}
		for i, b := range boxes {
			w := want[i]
			if b.Err != nil {
				t.Errorf("SR %s group %d: %v", o.Key, i, b.Err)
				continue
			}
			x0, y0, x1, y1 := b.Rect()
			if b.TrackingID != w.TrackingID || b.TrackingUID != w.TrackingUID || b.SOPInstanceUID != w.SOPInstanceUID ||
				[4]float64{x0, y0, x1, y1} != w.Pixels || len(b.Points) != 10 {
				t.Errorf("SR %s group %d: got %s %s %s %v (%d values), want %+v", o.Key, i,
					b.TrackingID, b.TrackingUID, b.SOPInstanceUID, []float64{x0, y0, x1, y1}, len(b.Points), w)
			}
			if b.Finding.Value != "52988006" || b.Finding.Scheme != "SCT" {
				t.Errorf("SR %s group %d: finding %+v, want SCT 52988006", o.Key, i, b.Finding)
			}
			if _, ok := ctSOPs[b.SOPInstanceUID]; !ok {
				t.Errorf("SR %s group %d references %s, not a CT object of the cohort", o.Key, i, b.SOPInstanceUID)
			}
		}
		ev, err := sr.Evidence(srJSON(t, ds, "CurrentRequestedProcedureEvidenceSequence"))
		if err != nil || len(ev) != 1 || ev[0] != ctSeries {
			t.Errorf("SR %s evidence %v (%v), want [%s]", o.Key, ev, err, ctSeries)
		}
		tmpl, _ := ds.FindElementByTag(tag.ContentTemplateSequence)
		if tmpl == nil {
			t.Errorf("SR %s has no ContentTemplateSequence", o.Key)
		}
	}
}

// srJSON is a sequence of an SR dataset as JSON in the shape of BigQuery's TO_JSON_STRING
// (keyword → value), made by the same conversion that loads the SR into the emulator.
func srJSON(t *testing.T, ds dicom.Dataset, keyword string) []byte {
	t.Helper()
	b, err := json.Marshal(sr.Tree(ds.Elements)[keyword])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func trackingNumber(id string) int {
	var n int
	for _, c := range id {
		if c >= '0' && c <= '9' {
			n = n*10 + int(c-'0')
		}
	}
	return n
}

// pydicomCheck reads every object with pydicom (Debian python3-pydicom) and reports per
// object what it found.
const pydicomCheck = `
import json, sys, glob, os
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut
out = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "*.dcm"))):
    ds = pydicom.dcmread(path)
    key = os.path.relpath(path, sys.argv[1])
    if ds.Modality == "CT":
        hu = apply_modality_lut(ds.pixel_array, ds)
        out[key] = {"sop": ds.SOPInstanceUID, "shape": list(ds.pixel_array.shape),
                    "min": float(hu.min()), "max": float(hu.max()), "z": float(ds.ImagePositionPatient[2])}
    else:
        groups = []
        def walk(items):
            for it in items:
                if it.ValueType == "CONTAINER" and it.ConceptNameCodeSequence[0].CodeValue == "125007":
                    groups.append(it)
                elif "ContentSequence" in it:
                    walk(it.ContentSequence)
        walk(ds.ContentSequence)
        out[key] = {"sop": ds.SOPInstanceUID, "groups": len(groups), "class": ds.SOPClassUID}
json.dump(out, sys.stdout)
`

func TestReadableByPydicom(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import pydicom, numpy").Run(); err != nil {
		testenv.Missing(t, "pydicom not installed (apt-get install -y --no-install-recommends python3-pydicom)")
	}
	m := smallCohort(t)
	cmd := exec.Command(py, "-c", pydicomCheck, filepath.Join(m.Dir, ObjectsDir))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, stderr.String())
	}
	var got map[string]struct {
		SOP    string  `json:"sop"`
		Shape  []int   `json:"shape"`
		Min    float64 `json:"min"`
		Max    float64 `json:"max"`
		Z      float64 `json:"z"`
		Groups int     `json:"groups"`
		Class  string  `json:"class"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	truth, _ := m.Truth()
	boxes := map[string]int{}
	for _, tu := range truth {
		boxes[tu.PatientID] += len(tu.Boxes)
	}
	if len(got) != len(m.Objects) {
		t.Fatalf("pydicom read %d objects, the manifest lists %d", len(got), len(m.Objects))
	}
	for _, o := range m.Objects {
		g, ok := got[filepath.FromSlash(o.Key)]
		if !ok || g.SOP != o.SOPInstanceUID {
			t.Fatalf("pydicom: %s missing or SOP %q", o.Key, g.SOP)
		}
		switch o.Modality {
		case "CT":
			if len(g.Shape) != 2 || g.Shape[0] != 256 || g.Shape[1] != 256 || g.Min < -1024 || g.Max > 3071 || g.Min > -900 {
				t.Errorf("pydicom: %s shape %v HU %g..%g", o.Key, g.Shape, g.Min, g.Max)
			}
		case "SR":
			if g.Groups != boxes[o.PatientID] || g.Class != sopComprehensive3DSR {
				t.Errorf("pydicom: SR %s has %d measurement groups (class %s), want %d", o.Key, g.Groups, g.Class, boxes[o.PatientID])
			}
		}
	}
}

func TestMain(m *testing.M) {
	ortEnv = onnxrttestOpen()
	code := m.Run()
	ortEnv.Close()
	if smallDir != "" {
		os.RemoveAll(smallDir)
	}
	os.Exit(code)
}

var update = flag.Bool("update", false, "rewrite testdata/small-cohort.sha256")

// TestGoldenCohort pins the bytes the generator writes (through the SHA-256 of every object,
// all listed in the manifest, and of the truth and clinical files): a change to the phantom,
// the plan or the DICOM writers shows up here, and must come with a new Version so that cached
// demo cohorts are regenerated. Go may fuse multiply-adds on other architectures, so the
// golden value is for amd64.
func TestGoldenCohort(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("golden hash recorded on amd64")
	}
	m := smallCohort(t)
	h := sha256.New()
	for _, f := range []string{ManifestFile, TruthFile, ClinicalFile} {
		b, err := os.ReadFile(filepath.Join(m.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	got := fmt.Sprintf("%x  generator version %s, seed %d, %d patients\n", h.Sum(nil), Version, smallSeed, smallPatients)
	path := filepath.Join("testdata", "small-cohort.sha256")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("the generated cohort changed:\n got  %s want %s"+
			"If that is intended, bump demo.Version and run go test ./demo -run TestGoldenCohort -update.", got, want)
	}
}
