package sr

import (
	"encoding/json"
	"os"
	"os/exec"
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
