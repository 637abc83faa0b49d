package sr

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

// debianTestSR is pydicom's test-SR.dcm (Debian's python3-pydicom, installed by make deps): an
// SR written by another toolkit (a Basic Text SR, no measurement groups).
const debianTestSR = "/usr/lib/python3/dist-packages/pydicom/data/test_files/test-SR.dcm"

// ReadDICOM gives each sequence in BigQuery's shape (one value as a scalar, several as a
// list) and the SOP instance uid, checked against pydicom's reading of the same file.
func TestReadDICOMAgainstPydicom(t *testing.T) {
	b, err := os.ReadFile(debianTestSR)
	if err != nil {
		testenv.Missing(t, "%v: install python3-pydicom (make deps)", err)
	}
	doc, err := ReadDICOM(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", "-c", `
import sys, json, pydicom
ds = pydicom.dcmread(sys.argv[1])
def walk(items):
    return [{"ValueType": it.get("ValueType"),
             "CodeMeaning": it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it else None,
             "children": walk(it.ContentSequence) if "ContentSequence" in it else []} for it in items]
print(json.dumps({"sop": ds.SOPInstanceUID, "content": walk(ds.ContentSequence)}))
`, debianTestSR).Output()
	if err != nil {
		t.Fatalf("pydicom: %v", err)
	}
	var want struct {
		SOP     string `json:"sop"`
		Content []any  `json:"content"`
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	if doc.SOPInstanceUID != want.SOP {
		t.Errorf("SOP instance uid %q, pydicom says %q", doc.SOPInstanceUID, want.SOP)
	}
	var content []node
	if err := json.Unmarshal(doc.Content, &content); err != nil {
		t.Fatalf("content JSON: %v\n%s", err, doc.Content)
	}
	var walk func(items []node) []any
	walk = func(items []node) []any {
		out := []any{}
		for _, it := range items {
			var meaning any
			if c, ok := it["ConceptNameCodeSequence"].([]any); ok && len(c) > 0 {
				meaning = c[0].(node)["CodeMeaning"] // a scalar, as BigQuery gives a STRING
			}
			var kids []node
			if k, ok := it["ContentSequence"].([]any); ok {
				for _, x := range k {
					kids = append(kids, x.(node))
				}
			}
			out = append(out, map[string]any{"ValueType": it["ValueType"], "CodeMeaning": meaning, "children": walk(kids)})
		}
		return out
	}
	got, _ := json.Marshal(walk(content))
	exp, _ := json.Marshal(want.Content)
	if string(got) != string(exp) {
		t.Errorf("content tree\n got %s\nwant %s", got, exp)
	}
	if !strings.HasPrefix(string(doc.ContentTemplate), "null") && !strings.HasPrefix(string(doc.ContentTemplate), "[") {
		t.Errorf("ContentTemplateSequence JSON %s: want a list or null", doc.ContentTemplate)
	}
}

// FuzzReadDICOM: no input makes the SR reader panic or hang; what it returns is valid JSON.
func FuzzReadDICOM(f *testing.F) {
	if b, err := os.ReadFile(debianTestSR); err == nil {
		f.Add(b)
	}
	f.Add([]byte("DICM"))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := ReadDICOM(b)
		if err != nil {
			return
		}
		for _, j := range [][]byte{doc.Evidence, doc.ContentTemplate, doc.Content} {
			if !json.Valid(j) {
				t.Fatalf("invalid JSON %q", j)
			}
		}
	})
}

// highdicomSR builds, with highdicom (the library IDC's NLST-Sybil SRs were written with), a
// TID 1500 Comprehensive 3D SR of planar ROI groups as the NLST-Sybil conversion built them
// (idc-data-model.md §1.2): one group per box, a tracking identifier and UID, finding Lesion,
// finding site Lung, a closed 5-point POLYLINE on a source CT slice. Four boxes on three slices
// of one series, two on the same slice. It writes the SR to argv[2] and what it holds to argv[3].
const highdicomSR = `
import sys, json, copy, numpy as np, pydicom, highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
src = pydicom.dcmread(sys.argv[1])
series = generate_uid()
imgs = []
for k in range(3):
    d = copy.deepcopy(src)
    d.SeriesInstanceUID = series
    d.SOPInstanceUID = d.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    d.ImagePositionPatient = [-100.0, -100.0, -50.0 + 2.5 * k]
    d.InstanceNumber = k + 1
    imgs.append(d)
boxes = [(0, 30.5, 40.25, 12.0, 9.5), (1, 31.0, 41.0, 14.0, 10.0), (1, 80.0, 20.0, 6.0, 6.0), (2, 33.0, 42.0, 10.0, 8.0)]
groups, want = [], []
for i, (k, x, y, w, h) in enumerate(boxes):
    pts = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]])
    uid = generate_uid()
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=pts,
                               source_image=hd.sr.SourceImageForRegion.from_source_image(imgs[k]))
    g = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"Bounding box #{i+1}"),
        referenced_region=region, finding_type=codes.SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)])
    groups.append(g)
    want.append({"tracking_id": f"Bounding box #{i+1}", "tracking_uid": uid, "points": pts.flatten().tolist(),
                 "sop": imgs[k].SOPInstanceUID})
obs = hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
    observer_type=codes.DCM.Person, observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Anonymous^Reader")))
report = hd.sr.MeasurementReport(observation_context=obs, procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
sr = hd.sr.Comprehensive3DSR(evidence=imgs, content=report, series_instance_uid=generate_uid(), series_number=101,
                             sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Sybil",
                             series_description="Sybil lesion bounding box", is_complete=True, is_final=True)
sr.save_as(sys.argv[2])
json.dump({"sop": sr.SOPInstanceUID, "ct_series": series, "boxes": want}, open(sys.argv[3], "w"))
`

// An SR written by highdicom reads back, through ReadDICOM and the same parsers as BigQuery's
// JSON, with its template, its evidence series and every box as it was written.
func TestReadDICOMOnHighdicomSR(t *testing.T) {
	py := testenv.ReferencePython(t)
	dir := t.TempDir()
	srPath, wantPath := filepath.Join(dir, "sr.dcm"), filepath.Join(dir, "sr.json")
	ct := "/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm"
	if out, err := exec.Command(py, "-c", highdicomSR, ct, srPath, wantPath).CombinedOutput(); err != nil {
		t.Fatalf("highdicom: %v\n%s", err, out)
	}
	var want struct {
		SOP      string `json:"sop"`
		CTSeries string `json:"ct_series"`
		Boxes    []struct {
			TrackingID  string    `json:"tracking_id"`
			TrackingUID string    `json:"tracking_uid"`
			Points      []float64 `json:"points"`
			SOP         string    `json:"sop"`
		} `json:"boxes"`
	}
	raw, err := os.ReadFile(wantPath)
	if err == nil {
		err = json.Unmarshal(raw, &want)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(srPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ReadDICOM(b)
	if err != nil {
		t.Fatal(err)
	}
	if doc.SOPInstanceUID != want.SOP {
		t.Errorf("SOP instance uid %q, want %q", doc.SOPInstanceUID, want.SOP)
	}
	if ev, err := Evidence(doc.Evidence); err != nil || len(ev) != 1 || ev[0] != want.CTSeries {
		t.Errorf("evidence %v (%v), want [%s]", ev, err, want.CTSeries)
	}
	var tmpl []map[string]any
	if err := json.Unmarshal(doc.ContentTemplate, &tmpl); err != nil || len(tmpl) != 1 || tmpl[0]["TemplateIdentifier"] != "1500" {
		t.Errorf("content template %s (%v), want TID 1500", doc.ContentTemplate, err)
	}
	boxes, err := ParseJSON(doc.Content)
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) != len(want.Boxes) {
		t.Fatalf("%d boxes, want %d", len(boxes), len(want.Boxes))
	}
	for i, b := range boxes {
		w := want.Boxes[i]
		if b.Err != nil || b.Group != i || b.TrackingID != w.TrackingID || b.TrackingUID != w.TrackingUID ||
			b.SOPInstanceUID != w.SOP || b.GraphicType != "POLYLINE" || !slices.Equal(b.Points, w.Points) ||
			b.Finding.Value != "52988006" || b.Finding.Scheme != "SCT" {
			t.Errorf("box %d: %+v, want %+v", i, b, w)
		}
	}
}
