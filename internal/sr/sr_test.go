package sr

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the expected files of testdata/<case>/")

// goldenBox is a box as the golden files hold it: every field, the error as its message, and
// the pixel rectangle of a usable box.
type goldenBox struct {
	Group          int         `json:"group"`
	TrackingID     string      `json:"tracking_id,omitempty"`
	TrackingUID    string      `json:"tracking_uid,omitempty"`
	Finding        *goldenCode `json:"finding,omitempty"`
	GraphicType    string      `json:"graphic_type,omitempty"`
	Points         []float64   `json:"points,omitempty"`
	SOPInstanceUID string      `json:"sop_instance_uid,omitempty"`
	Rect           *[4]float64 `json:"rect,omitempty"`
	Err            string      `json:"error,omitempty"`
}

type goldenCode struct {
	Value   string `json:"value"`
	Scheme  string `json:"scheme,omitempty"`
	Meaning string `json:"meaning,omitempty"`
}

func goldenOf(boxes []Box) []goldenBox {
	out := make([]goldenBox, 0, len(boxes))
	for _, b := range boxes {
		g := goldenBox{Group: b.Group, TrackingID: b.TrackingID, TrackingUID: b.TrackingUID, GraphicType: b.GraphicType,
			Points: b.Points, SOPInstanceUID: b.SOPInstanceUID}
		if f := b.Finding; f != (Code{}) {
			g.Finding = &goldenCode{f.Value, f.Scheme, f.Meaning}
		}
		if b.Err != nil {
			g.Err = b.Err.Error()
		} else {
			x0, y0, x1, y1 := b.Rect()
			g.Rect = &[4]float64{x0, y0, x1, y1}
		}
		out = append(out, g)
	}
	return out
}

// TestGolden reads testdata/<case>/content.json (an SR's ContentSequence as TO_JSON_STRING
// writes it) and compares the boxes with boxes.json, or the document's error with error.txt.
// go test -run TestGolden -update rewrites the expected files.
func TestGolden(t *testing.T) {
	golden.ForEach(t, filepath.Join("testdata", "*", "content.json"), func(t *testing.T, dir string, data []byte) {
		boxes, perr := ParseJSON(data)
		name, got := "boxes.json", []byte(nil)
		if perr != nil {
			name, got = "error.txt", []byte(perr.Error()+"\n")
		} else {
			var err error
			if got, err = golden.JSON(goldenOf(boxes)); err != nil {
				t.Fatal(err)
			}
		}
		checkGolden(t, dir, name, got)
	})
}

// checkGolden compares got with dir/name, or writes it there (and removes the other
// expected file) with -update.
func checkGolden(t *testing.T, dir, name string, got []byte) {
	t.Helper()
	if *update {
		for _, f := range []string{"boxes.json", "error.txt"} {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
	golden.Check(t, filepath.Join(dir, name), got, *update)
}

func TestParseJSONNoContent(t *testing.T) {
	for _, in := range []string{"null", "[]"} {
		if _, err := ParseJSON([]byte(in)); !errors.Is(err, ErrNoContent) {
			t.Errorf("%s: err %v, want ErrNoContent", in, err)
		}
	}
}

func TestEvidence(t *testing.T) {
	got, err := Evidence([]byte(`[{"StudyInstanceUID":"1","ReferencedSeriesSequence":[{"ReferencedSOPSequence":[],"SeriesInstanceUID":"1.2.3"}]}]`))
	if err != nil || len(got) != 1 || got[0] != "1.2.3" {
		t.Fatalf("%v %v", got, err)
	}
}

// FuzzParseJSON starts from the golden cases.
func FuzzParseJSON(f *testing.F) {
	cases, _ := filepath.Glob(filepath.Join("testdata", "*", "content.json"))
	for _, in := range cases {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`[{"ValueType":"CONTAINER","ContentSequence":{"ValueType":"CONTAINER"}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		boxes, err := ParseJSON(data)
		if err != nil {
			return
		}
		for _, b := range boxes {
			if b.Err != nil {
				continue
			}
			// A usable box has a POLYLINE with an even number of finite values and an area.
			if b.GraphicType != "POLYLINE" || len(b.Points)%2 != 0 || b.SOPInstanceUID == "" {
				t.Fatalf("usable box violates its contract: %+v", b)
			}
			x0, y0, x1, y1 := b.Rect()
			if !(x1 > x0 && y1 > y0) {
				t.Fatalf("usable box without area: %+v", b)
			}
		}
		if !json.Valid(data) {
			t.Fatalf("invalid JSON accepted: %q", data)
		}
	})
}

// BenchmarkParseJSON parses an SR of 20 groups, about the size of an NLST-Sybil SR.
func BenchmarkParseJSON(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "twenty-groups", "content.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}
