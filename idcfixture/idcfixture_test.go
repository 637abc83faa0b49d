package idcfixture

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestTables(t *testing.T) {
	f := &Fixture{Release: "idc_v23", Patients: []Patient{{ID: "1", Prsn: &Prsn{Age: 60, DeStag: "110"},
		Ctab: []Ctab{{StudyYr: "0", SliceNum: "3"}},
		Series: []Series{{UID: "1.2", Slices: 3, Step: -2.5, NullGeometry: []int{1},
			SR: &SR{Boxes: []Box{{Slice: 0, X0: 1, Y0: 2, X1: 3, Y1: 4}, {Slice: 2, NoGraphicData: true}}}}}}}}
	tbls, err := f.Tables()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, tb := range tbls {
		rows[tb.Dataset+"."+tb.Name] = tb.Rows
		if n := bytes.Count(tb.NDJSON, []byte("\n")); n != tb.Rows {
			t.Errorf("%s: %d lines for %d rows", tb.Name, n, tb.Rows)
		}
	}
	if rows["idc_v23.dicom_all"] != 4 || rows["idc_v23_clinical.nlst_prsn"] != 1 || rows["idc_v23_clinical.nlst_ctab"] != 1 ||
		rows["idc_v23_clinical.column_metadata"] != len(DefaultColumns()) {
		t.Errorf("rows %v", rows)
	}
	lines := bytes.Split(bytes.TrimSpace(tbls[0].NDJSON), []byte("\n"))
	var ct1, sr map[string]any
	if err := json.Unmarshal(lines[1], &ct1); err != nil {
		t.Fatal(err)
	}
	if _, ok := ct1["ImagePositionPatient"]; ok {
		t.Error("slice 1 should have no ImagePositionPatient")
	}
	if err := json.Unmarshal(lines[3], &sr); err != nil {
		t.Fatal(err)
	}
	// root → Imaging Measurements → group → SCOORD → IMAGE: four ContentSequence levels.
	cs := sr["ContentSequence"].([]any)
	im := cs[len(cs)-1].(map[string]any)["ContentSequence"].([]any)
	g := im[0].(map[string]any)["ContentSequence"].([]any)
	sc := g[len(g)-1].(map[string]any)
	img := sc["ContentSequence"].([]any)[0].(map[string]any)
	if sc["ValueType"] != "SCOORD" || len(sc["GraphicData"].([]any)) != 10 || img["ValueType"] != "IMAGE" {
		t.Errorf("group %v", sc)
	}
	if s := &f.Patients[0].Series[0]; s.IPP(2) != [3]float64{0, 0, -5} || s.GCSURL(0) == s.GCSURL(1) {
		t.Errorf("geometry/urls")
	}
}
