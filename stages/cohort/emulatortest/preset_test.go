package emulatortest

import (
	"path/filepath"
	"testing"

	"connectome/internal/idcfake"
	"connectome/pipeline"
	"connectome/stages/cohort"
)

// presetFixture holds one patient per corner case of the published-2026 preset
// (idc-data-model §6.1). Slice k has InstanceNumber k+1; ctab sct_slice_num is the
// instance number.
func presetFixture() *idcfake.Fixture {
	ser := func(uid string, year int, boxes ...idcfake.Box) idcfake.Series {
		return idcfake.Series{UID: uid, StudyYear: year, Slices: 20, Origin: [3]float64{-160, -160, -100}, Step: -2.5,
			SR: &idcfake.SR{Boxes: boxes}}
	}
	box := func(k int) idcfake.Box { return idcfake.Box{Slice: k, X0: 100, Y0: 100, X1: 120, Y1: 130} }
	prsn := func(stage, typ string) *idcfake.Prsn {
		return &idcfake.Prsn{Age: 61, Gender: "1", Race: "1", Cigsmok: "0", DeStag: stage, DeType: typ}
	}
	ctab := func(yr, slice string) idcfake.Ctab {
		return idcfake.Ctab{StudyYr: yr, SliceNum: slice, EpiLoc: "1"}
	}
	return &idcfake.Fixture{Release: cohort.DefaultRelease, Patients: []idcfake.Patient{
		// Kept: one single-box slice matching one abnormality.
		{ID: "200001", Prsn: prsn("110", "8140"), Ctab: []idcfake.Ctab{ctab("0", "10")},
			Series: []idcfake.Series{ser("1.2.826.0.2.1", 0, idcfake.Box{Slice: 9, X0: 100.4, Y0: 200.6, X1: 110.2, Y1: 220.2})}},
		// Two records (two matched slices) → dropped by step 5.
		{ID: "200002", Prsn: prsn("110", "8140"), Ctab: []idcfake.Ctab{ctab("0", "5"), ctab("0", "13")},
			Series: []idcfake.Series{ser("1.2.826.0.2.2", 0, box(4), box(12))}},
		// The matched slice carries two boxes → step 1.
		{ID: "200003", Prsn: prsn("110", "8140"), Ctab: []idcfake.Ctab{ctab("0", "7")},
			Series: []idcfake.Series{ser("1.2.826.0.2.3", 0, box(6), idcfake.Box{Slice: 6, X0: 300, Y0: 300, X1: 310, Y1: 310})}},
		// Stage 999 is a known code but not a valid stage → step 2.
		{ID: "200004", Prsn: prsn("999", "8140"), Ctab: []idcfake.Ctab{ctab("0", "9")},
			Series: []idcfake.Series{ser("1.2.826.0.2.4", 0, box(8))}},
		// The slice matches two abnormalities → step 3.
		{ID: "200005", Prsn: prsn("120", "8140"), Ctab: []idcfake.Ctab{ctab("0", "9"), ctab("0", "9")},
			Series: []idcfake.Series{ser("1.2.826.0.2.5", 0, box(8))}},
		// Morphology not in the published list → step 4.
		{ID: "200006", Prsn: prsn("120", "8999"), Ctab: []idcfake.Ctab{ctab("0", "9")},
			Series: []idcfake.Series{ser("1.2.826.0.2.6", 0, box(8))}},
		// The same key slice in two reconstructions → two records → step 5.
		{ID: "200007", Prsn: prsn("210", "8140"), Ctab: []idcfake.Ctab{ctab("0", "4")},
			Series: []idcfake.Series{ser("1.2.826.0.2.7", 0, box(3)), ser("1.2.826.0.2.8", 0, box(3))}},
		// The abnormality is from another screening year → no match.
		{ID: "200008", Prsn: prsn("110", "8140"), Ctab: []idcfake.Ctab{ctab("1", "4")},
			Series: []idcfake.Series{ser("1.2.826.0.2.9", 0, box(3))}},
		// Kept: T1 study, z ascending, 0.6 mm pixels; the box on slice 6 has no abnormality.
		{ID: "200009", Prsn: prsn("400", "8070"), Ctab: []idcfake.Ctab{ctab("1", "6")},
			Series: []idcfake.Series{{UID: "1.2.826.0.2.10", StudyYear: 1, Slices: 12, Origin: [3]float64{-150, -140, -320},
				Step: 1.25, PixelSpacing: [2]float64{0.6, 0.6}, SR: &idcfake.SR{Boxes: []idcfake.Box{
					{Slice: 5, X0: 50, Y0: 60, X1: 71, Y1: 81}, {Slice: 6, X0: 50, Y0: 60, X1: 71, Y1: 81}}}}}},
	}}
}

func TestPublished2026(t *testing.T) {
	f := presetFixture()
	out := runCohort(t, startEmulator(t, f), settings(cohort.PolicyPublished2026))
	if out.runErr != nil {
		t.Fatal(out.runErr)
	}
	if len(out.failures) != 0 {
		t.Errorf("failures: %+v", out.failures)
	}
	if len(out.lesions) != 2 {
		t.Fatalf("%d lesions, want 2 (patients 200001, 200009): %+v", len(out.lesions), out.lesions)
	}
	// Centre as the notebooks placed it: voxel floor(box centre) on the key slice.
	// 200001: centre (105.3, 210.4) → voxel (105, 210); IPP (-160, -160, -100 - 2.5·9), 0.7 mm.
	// 200009: centre (60.5, 70.5) → voxel (60, 70); IPP (-150, -140, -320 + 1.25·5), 0.6 mm.
	want := map[string]struct {
		c    [3]float64
		sop  string
		year int32
	}{
		"200001": {[3]float64{-86.5, -13, -122.5}, f.Patients[0].Series[0].SOPUID(9), 0},
		"200009": {[3]float64{-114, -98, -313.75}, f.Patients[8].Series[0].SOPUID(5), 1},
	}
	for _, l := range out.lesions {
		w, ok := want[l.PatientID]
		if !ok {
			t.Errorf("unexpected patient %s", l.PatientID)
			continue
		}
		if !near3(l.CenterMM, w.c) || l.KeySOPInstanceUID != w.sop || l.StudyYear != w.year || l.NBoxes != 1 {
			t.Errorf("patient %s: centre %v key %s year %d, want %v %s %d", l.PatientID, l.CenterMM, l.KeySOPInstanceUID, l.StudyYear, w.c, w.sop, w.year)
		}
	}
	stages := map[string]string{}
	for _, c := range out.clinical {
		stages[c.PatientID] = c.Stage
	}
	if stages["200001"] != "IA" || stages["200009"] != "IV" || len(stages) != 2 {
		t.Errorf("clinical stages %v", stages)
	}
	// Row counts after each step (see the fixture's comments).
	m, ok, err := pipeline.ReadMarker(filepath.Dir(out.dir), "cohort", pipeline.Shard{})
	if err != nil || !ok {
		t.Fatalf("marker: %v %v", ok, err)
	}
	for k, v := range map[string]int64{"preset_single_box_slices": 11, "preset_ctab_matched": 8,
		"preset_single_match": 7, "preset_listed_icdo3": 6, "patients": 2} {
		if m.Counts[k] != v {
			t.Errorf("count %s = %d, want %d", k, m.Counts[k], v)
		}
	}
}
