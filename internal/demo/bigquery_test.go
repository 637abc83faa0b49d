package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"connectome/internal/sr"
)

// TestTablesDeriveFromObjects checks the dicom_all rows made from the generated files: a CT
// row carries the file's geometry in IDC's column types, and an SR row's content tree (as
// BigQuery's TO_JSON_STRING would return it) gives the cohort stage's walker the same boxes
// as the file itself.
func TestTablesDeriveFromObjects(t *testing.T) {
	m := smallCohort(t)
	tables, err := m.Tables("idc_v23")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]map[string]any{}
	for _, tb := range tables {
		if tb.Dataset != map[bool]string{true: "idc_v23", false: "idc_v23_clinical"}[tb.Name == "dicom_all"] {
			t.Errorf("table %s in dataset %s", tb.Name, tb.Dataset)
		}
		sc := bufio.NewScanner(bytes.NewReader(tb.NDJSON))
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("%s: %v", tb.Name, err)
			}
			byName[tb.Name] = append(byName[tb.Name], row)
		}
		if len(byName[tb.Name]) != tb.Rows {
			t.Errorf("%s: %d NDJSON rows, Rows says %d", tb.Name, len(byName[tb.Name]), tb.Rows)
		}
	}
	if len(byName["dicom_all"]) != len(m.Objects) || len(byName["nlst_prsn"]) != smallPatients || len(byName["column_metadata"]) == 0 {
		t.Fatalf("rows: dicom_all %d (want %d), nlst_prsn %d (want %d), column_metadata %d",
			len(byName["dicom_all"]), len(m.Objects), len(byName["nlst_prsn"]), smallPatients, len(byName["column_metadata"]))
	}
	truth, _ := m.Truth()
	for i, row := range byName["dicom_all"] {
		o := m.Objects[i]
		if row["SOPInstanceUID"] != o.SOPInstanceUID || row["gcs_url"] != m.GCSURL(o) || row["crdc_instance_uuid"] != o.CRDCInstanceUUID ||
			row["instance_size"] != float64(o.Size) || row["Modality"] != o.Modality || row["collection_id"] != "nlst" {
			t.Fatalf("dicom_all row %d does not describe %+v: %v", i, o, row)
		}
		switch o.Modality {
		case "CT":
			ipp, _ := row["ImagePositionPatient"].([]any)
			iop, _ := row["ImageOrientationPatient"].([]any)
			ps, _ := row["PixelSpacing"].([]any)
			if len(ipp) != 3 || len(iop) != 6 || len(ps) != 2 || row["Rows"] != float64(256) || row["StudyDate"] == nil {
				t.Fatalf("CT row %s: geometry %v %v %v rows %v date %v", o.Key, ipp, iop, ps, row["Rows"], row["StudyDate"])
			}
			if _, ok := ipp[2].(string); !ok {
				t.Errorf("ImagePositionPatient is %T, want REPEATED STRING as in IDC", ipp[2])
			}
			if _, ok := row["analysis_result_id"]; ok {
				t.Errorf("CT row %s has an analysis_result_id", o.Key)
			}
		case "SR":
			if row["analysis_result_id"] != "NLST-Sybil" {
				t.Errorf("SR row %s: analysis_result_id %v", o.Key, row["analysis_result_id"])
			}
			content, _ := json.Marshal(row["ContentSequence"])
			boxes, err := sr.ParseJSON(content)
			if err != nil {
				t.Fatalf("SR row %s: %v", o.Key, err)
			}
			evidence, _ := json.Marshal(row["CurrentRequestedProcedureEvidenceSequence"])
			ev, err := sr.Evidence(evidence)
			var want []TruthBox
			var series string
			for _, tu := range truth {
				if tu.PatientID == o.PatientID {
					want = append(want, tu.Boxes...)
					series = tu.SeriesInstanceUID
				}
			}
			if err != nil || !slices.Equal(ev, []string{series}) {
				t.Errorf("SR row %s: evidence %v (%v), want [%s]", o.Key, ev, err, series)
			}
			if len(boxes) != len(want) {
				t.Fatalf("SR row %s: %d boxes, truth %d", o.Key, len(boxes), len(want))
			}
			got := map[string]TruthBox{}
			for _, b := range boxes {
				if b.Err != nil {
					t.Fatalf("SR row %s: %v", o.Key, b.Err)
				}
				x0, y0, x1, y1 := b.Rect()
				got[b.TrackingUID] = TruthBox{TrackingID: b.TrackingID, TrackingUID: b.TrackingUID, SOPInstanceUID: b.SOPInstanceUID,
					Pixels: [4]float64{x0, y0, x1, y1}}
			}
			for _, w := range want {
				g := got[w.TrackingUID]
				w.InstanceNumber = 0
				if g != w {
					t.Errorf("SR row %s: box %+v, want %+v", o.Key, g, w)
				}
			}
		}
	}
	for _, r := range byName["nlst_prsn"] {
		if _, ok := r["age"].(float64); !ok || r["dicom_patient_id"] == "" || r["de_stag"] == nil {
			t.Errorf("nlst_prsn row %v", r)
		}
	}
}
