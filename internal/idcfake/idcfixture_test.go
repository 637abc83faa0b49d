package idcfake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"cloud.google.com/go/bigquery"

	"connectome/internal/sr"
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

// withNulls rewrites rows as BigQuery's TO_JSON_STRING returns them: every field of the
// schema present, NULL (or [] for a repeated field) where the row does not set it. The
// emulator omits unset fields instead, so this is where the stage's walk meets IDC's
// NULL-laden ContentSequence.
func withNulls(v any, f *bigquery.FieldSchema) any {
	if f.Type != bigquery.RecordFieldType {
		if v == nil && f.Repeated {
			return []any{}
		}
		return v
	}
	item := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for _, sub := range f.Schema {
			out[sub.Name] = withNulls(m[sub.Name], sub)
		}
		return out
	}
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			m, _ := it.(map[string]any)
			out[i] = item(m)
		}
		return out
	case nil:
		if f.Repeated {
			return []any{}
		}
		return nil
	}
	return v
}

// TestContentSequenceNullsParse: the SR content tree with every field of the wide schema
// present and NULL gives the SR walker the same boxes as the sparse tree.
func TestContentSequenceNullsParse(t *testing.T) {
	f := &Fixture{Release: "idc_v25", Patients: []Patient{{ID: "1", Series: []Series{{UID: "1.2", Slices: 3, Step: -2.5,
		SR: &SR{Boxes: []Box{{Slice: 0, X0: 1, Y0: 2, X1: 3, Y1: 4}, {Slice: 2, X0: 5, Y0: 6, X1: 7, Y1: 9}}}}}}}}
	tbls, err := f.Tables()
	if err != nil {
		t.Fatal(err)
	}
	var content []any
	sc := bufio.NewScanner(bytes.NewReader(tbls[0].NDJSON))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		if row["Modality"] == "SR" {
			content, _ = row["ContentSequence"].([]any)
		}
	}
	var field *bigquery.FieldSchema
	for _, fs := range DicomAllSchema(StyleOf(f.Release)) {
		if fs.Name == "ContentSequence" {
			field = fs
		}
	}
	sparse, _ := json.Marshal(content)
	wide, _ := json.Marshal(withNulls(content, field))
	if n := bytes.Count(wide, []byte("null")); n < 100 {
		t.Fatalf("wide tree has %d NULLs; the schema is not wide", n)
	}
	a, errA := sr.ParseJSON(sparse)
	b, errB := sr.ParseJSON(wide)
	if errA != nil || errB != nil || len(a) != 2 || !reflect.DeepEqual(a, b) {
		t.Errorf("sparse %v %+v\nwide %v %+v", errA, a, errB, b)
	}
}
