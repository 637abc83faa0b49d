package sr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// group builds one TID 1410 group in the shape TO_JSON_STRING gives: keys in any order,
// GraphicData as JSON strings (as the emulator writes FLOAT64) or numbers.
func group(scoord string) string {
	return `{"ContentSequence":[
	  {"TextValue":"Bounding box #1","ValueType":"TEXT","ConceptNameCodeSequence":[{"CodeValue":"112039","CodingSchemeDesignator":"DCM","CodeMeaning":"Tracking Identifier"}]},
	  {"UID":"1.2.3.4","ValueType":"UIDREF","ConceptNameCodeSequence":[{"CodeMeaning":"Tracking Unique Identifier","CodeValue":"112040"}]},
	  {"ValueType":"CODE","ConceptNameCodeSequence":[{"CodeValue":"121071"}],"ConceptCodeSequence":[{"CodeValue":"52988006","CodingSchemeDesignator":"SCT","CodeMeaning":"Lesion"}]},
	  ` + scoord + `],
	 "ValueType":"CONTAINER","ConceptNameCodeSequence":[{"CodeValue":"125007","CodingSchemeDesignator":"DCM","CodeMeaning":"Measurement Group"}],"GraphicData":null}`
}

const image = `"ContentSequence":[{"ValueType":"IMAGE","ReferencedSOPSequence":[{"ReferencedSOPClassUID":"1.2.840.10008.5.1.4.1.1.2","ReferencedSOPInstanceUID":"9.8.7"}]}]`

func doc(groups ...string) string {
	return `[{"ValueType":"CODE","ConceptNameCodeSequence":[{"CodeValue":"121049"}]},
	 {"ValueType":"CONTAINER","ConceptNameCodeSequence":[{"CodeValue":"126010","CodeMeaning":"Imaging Measurements"}],
	  "ContentSequence":[` + strings.Join(groups, ",") + `]}]`
}

func TestParseJSON(t *testing.T) {
	good := `{"GraphicType":"POLYLINE","ValueType":"SCOORD",` + image + `,
	  "GraphicData":["130.02","200.5",140,"200.5","140","210.25",130.02,210.25,"130.02","200.5"]}`
	boxes, err := ParseJSON([]byte(doc(group(good))))
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) != 1 {
		t.Fatalf("%d boxes, want 1", len(boxes))
	}
	b := boxes[0]
	if b.Err != nil || b.TrackingID != "Bounding box #1" || b.TrackingUID != "1.2.3.4" || b.SOPInstanceUID != "9.8.7" ||
		b.Finding.Value != "52988006" || b.GraphicType != "POLYLINE" || len(b.Points) != 10 {
		t.Fatalf("box %+v", b)
	}
	x0, y0, x1, y1 := b.Rect()
	if x0 != 130.02 || y0 != 200.5 || x1 != 140 || y1 != 210.25 {
		t.Errorf("rect %v %v %v %v", x0, y0, x1, y1)
	}
}

func TestParseJSONBadGroups(t *testing.T) {
	cases := []struct {
		name, scoord, want string
	}{
		{"no GraphicData", `{"GraphicType":"POLYLINE","ValueType":"SCOORD",` + image + `}`, "no GraphicData"},
		{"null GraphicData", `{"GraphicType":"POLYLINE","ValueType":"SCOORD","GraphicData":null,` + image + `}`, "no GraphicData"},
		{"point", `{"GraphicType":"POINT","ValueType":"SCOORD","GraphicData":[1,2],` + image + `}`, `"POINT", want POLYLINE`},
		{"odd count", `{"GraphicType":"POLYLINE","ValueType":"SCOORD","GraphicData":[1,2,3,4,5,6,7],` + image + `}`, "even number"},
		{"not a number", `{"GraphicType":"POLYLINE","ValueType":"SCOORD","GraphicData":["1","x",3,4,5,6],` + image + `}`, "GraphicData"},
		{"no image", `{"GraphicType":"POLYLINE","ValueType":"SCOORD","GraphicData":[1,1,5,1,5,5,1,5]}`, "references no image"},
		{"no area", `{"GraphicType":"POLYLINE","ValueType":"SCOORD","GraphicData":[1,1,5,1,5,1,1,1],` + image + `}`, "no area"},
		{"no scoord", `{"ValueType":"TEXT","TextValue":"x"}`, "no image region"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			boxes, err := ParseJSON([]byte(doc(group(c.scoord))))
			if err != nil {
				t.Fatal(err)
			}
			if len(boxes) != 1 || boxes[0].Err == nil || !strings.Contains(boxes[0].Err.Error(), c.want) {
				t.Fatalf("got %+v, want an error containing %q", boxes, c.want)
			}
		})
	}
}

func TestParseJSONDocumentErrors(t *testing.T) {
	for _, in := range []string{"null", "[]"} {
		if _, err := ParseJSON([]byte(in)); !errors.Is(err, ErrNoContent) {
			t.Errorf("%s: err %v, want ErrNoContent", in, err)
		}
	}
	for _, in := range []string{"", "{", `"x"`, "[1] [2]"} {
		if _, err := ParseJSON([]byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	deep := strings.Repeat(`[{"ValueType":"CONTAINER","ContentSequence":`, 100) + "[]" + strings.Repeat("}]", 100)
	if _, err := ParseJSON([]byte(deep)); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("deep tree: %v", err)
	}
}

func TestEvidence(t *testing.T) {
	got, err := Evidence([]byte(`[{"StudyInstanceUID":"1","ReferencedSeriesSequence":[{"ReferencedSOPSequence":[],"SeriesInstanceUID":"1.2.3"}]}]`))
	if err != nil || len(got) != 1 || got[0] != "1.2.3" {
		t.Fatalf("%v %v", got, err)
	}
}

// The group order, several groups, and the meaning-only match used by IDC's SQL.
func TestParseJSONManyGroups(t *testing.T) {
	g := func(sop string) string {
		return `{"ValueType":"CONTAINER","ConceptNameCodeSequence":[{"CodeMeaning":"Measurement Group"}],"ContentSequence":[
		  {"ValueType":"SCOORD","GraphicType":"POLYLINE","GraphicData":[0,0,2,0,2,2,0,2,0,0],
		   "ContentSequence":[{"ValueType":"IMAGE","ReferencedSOPSequence":[{"ReferencedSOPInstanceUID":"` + sop + `"}]}]}]}`
	}
	boxes, err := ParseJSON([]byte(doc(g("a"), g("b"), g("c"))))
	if err != nil {
		t.Fatal(err)
	}
	var sops []string
	for i, b := range boxes {
		if b.Err != nil || b.Group != i {
			t.Errorf("box %d: %+v", i, b)
		}
		sops = append(sops, b.SOPInstanceUID)
	}
	if strings.Join(sops, "") != "abc" {
		t.Errorf("order %v", sops)
	}
}

func FuzzParseJSON(f *testing.F) {
	good := `{"GraphicType":"POLYLINE","ValueType":"SCOORD",` + image + `,"GraphicData":["1","2",3,4,5,6,7,8]}`
	f.Add([]byte(doc(group(good))))
	f.Add([]byte(`[{"ValueType":"CONTAINER","ContentSequence":{"ValueType":"CONTAINER"}}]`))
	f.Add([]byte(`null`))
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
	good := `{"GraphicType":"POLYLINE","ValueType":"SCOORD",` + image + `,
	  "GraphicData":["130.02","200.5","140","200.5","140","210.25","130.02","210.25","130.02","200.5"]}`
	gs := make([]string, 20)
	for i := range gs {
		gs[i] = group(good)
	}
	data := []byte(doc(gs...))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}
