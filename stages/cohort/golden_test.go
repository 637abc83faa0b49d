package cohort

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"connectome/internal/golden"
	"connectome/internal/sr"
	"connectome/internal/tables"
	"connectome/pipeline"
)

var update = flag.Bool("update", false, "rewrite the expected files of testdata/<case>/")

// goldenCase is testdata/<case>/case.json: axial CT series, the SR objects annotating them,
// and the grouping and policy settings. It runs the BigQuery source's steps after the
// queries: place the boxes, group them into lesions, apply the policy, sort.
type goldenCase struct {
	Series      []goldenSeries `json:"series"`
	SRs         []goldenSR     `json:"srs"`
	MaxSliceGap int            `json:"max_slice_gap"`
	Policy      string         `json:"policy"` // all-lesions or one-lesion-per-patient
}

// goldenSeries is an axial series of 64×64 slices of 1 mm pixels at z = k·step_mm; its
// instance k (from 0) has SOP UID "<uid>.<a+k>" and instance number k+1.
type goldenSeries struct {
	UID    string  `json:"uid"`
	Slices int     `json:"slices"`
	StepMM float64 `json:"step_mm"`
	// Missing names, per SOP UID, geometry columns that were NULL in dicom_all.
	Missing map[string][]string `json:"missing,omitempty"`
}

type goldenSR struct {
	PatientID string      `json:"patient_id"`
	StudyDate string      `json:"study_date,omitempty"`
	Series    string      `json:"series"`
	SOPUID    string      `json:"sr_sop_uid"`
	Boxes     []goldenBox `json:"boxes"`
}

// goldenBox is a measurement group: a rectangle [x0, y0, x1, y1] in pixel coordinates on
// slice sop, or a group that sr already refused (error).
type goldenBox struct {
	TrackingUID string     `json:"tracking_uid,omitempty"`
	SOP         string     `json:"sop,omitempty"`
	Rect        [4]float64 `json:"rect"`
	Error       string     `json:"error,omitempty"`
}

// goldenResult is testdata/<case>/result.json.
type goldenResult struct {
	Lesions []goldenLesion `json:"lesions"`
	// Failures maps each failed measurement group (item) to "class: message".
	Failures map[string]string `json:"failures"`
	// PatientsDropped counts the patients one-lesion-per-patient drops.
	PatientsDropped int `json:"patients_dropped"`
}

// goldenLesion is a lesion of result.json.
type goldenLesion struct {
	LesionID  string     `json:"lesion_id"`
	PatientID string     `json:"patient_id"`
	Series    string     `json:"series"`
	StudyYear int32      `json:"study_year"`
	NBoxes    int32      `json:"n_boxes"`
	KeySOP    string     `json:"key_sop"`
	CenterMM  [3]float64 `json:"center_mm"`
	BoxMinMM  [3]float64 `json:"box_min_mm"`
	BoxMaxMM  [3]float64 `json:"box_max_mm"`
}

func (gs goldenSeries) build() *series {
	ins := make([]*tables.Instance, 0, gs.Slices)
	for k := 0; k < gs.Slices; k++ {
		ins = append(ins, &tables.Instance{SeriesInstanceUID: gs.UID, SOPInstanceUID: gs.UID + "." + string(rune('a'+k)),
			InstanceNumber: int32(k + 1), ImagePositionPatient: [3]float64{0, 0, float64(k) * gs.StepMM},
			ImageOrientationPatient: [6]float64{1, 0, 0, 0, 1, 0}, PixelSpacing: [2]float64{1, 1}, Rows: 64, Columns: 64})
	}
	s := newSeries(gs.UID, ins)
	s.missing = gs.Missing
	return s
}

func (g goldenSR) build() *srObject {
	o := &srObject{PatientID: g.PatientID, StudyDate: g.StudyDate, CTSeriesUID: g.Series, SRSOPUID: g.SOPUID}
	for i, b := range g.Boxes {
		x0, y0, x1, y1 := b.Rect[0], b.Rect[1], b.Rect[2], b.Rect[3]
		box := sr.Box{Group: i, TrackingUID: b.TrackingUID, GraphicType: "POLYLINE", SOPInstanceUID: b.SOP,
			Points: []float64{x0, y0, x1, y0, x1, y1, x0, y1, x0, y0}}
		if b.Error != "" {
			box = sr.Box{Group: i, Err: errors.New(b.Error)}
		}
		o.Boxes = append(o.Boxes, box)
	}
	return o
}

// run places, groups and selects; reverse feeds every SR's boxes in reverse order, which
// must not change the result.
func (c goldenCase) run(reverse bool) goldenResult {
	seriesOf := map[string]*series{}
	for _, gs := range c.Series {
		seriesOf[gs.UID] = gs.build()
	}
	res := goldenResult{Failures: map[string]string{}}
	fail := func(item string, err error) { res.Failures[item] = pipeline.ErrorClass(err) + ": " + err.Error() }
	var placed []placedBox
	for _, g := range c.SRs {
		o := g.build()
		if reverse {
			slices.Reverse(o.Boxes)
		}
		s := seriesOf[o.CTSeriesUID]
		if s == nil {
			s = newSeries(o.CTSeriesUID, nil)
		}
		placed = append(placed, placeBoxes(o, s, fail)...)
	}
	ls := lesionsFromBoxes(placed, seriesOf, c.MaxSliceGap)
	if c.Policy == PolicyOneLesionPerPatient {
		ls, res.PatientsDropped = oneLesionPerPatient(ls)
	}
	sortLesions(ls)
	for _, l := range ls {
		res.Lesions = append(res.Lesions, goldenLesion{LesionID: l.LesionID, PatientID: l.PatientID, Series: l.SeriesInstanceUID,
			StudyYear: l.StudyYear, NBoxes: l.NBoxes, KeySOP: l.KeySOPInstanceUID, CenterMM: l.CenterMM, BoxMinMM: l.BoxMinMM, BoxMaxMM: l.BoxMaxMM})
	}
	return res
}

// TestGolden runs testdata/<case>/case.json and compares the lesions, the failed measurement
// groups and the dropped patients with result.json. Each case runs
// twice, the second time with every SR's boxes in reverse order: ids and groups must not
// depend on the order BigQuery returns rows in. go test -run TestGolden -update rewrites the
// expected files.
func TestGolden(t *testing.T) {
	golden.ForEach(t, filepath.Join("testdata", "*", "case.json"), func(t *testing.T, dir string, data []byte) {
		var c goldenCase
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if c.Policy != PolicyAllLesions && c.Policy != PolicyOneLesionPerPatient {
			t.Fatalf("%s: policy %q", dir, c.Policy)
		}
		res := c.run(false)
		golden.CheckJSON(t, filepath.Join(dir, "result.json"), res, *update)
		if rev := c.run(true); fmt.Sprint(rev) != fmt.Sprint(res) {
			t.Errorf("boxes in reverse order give\n%+v\nnot\n%+v", rev, res)
		}
	})
}
