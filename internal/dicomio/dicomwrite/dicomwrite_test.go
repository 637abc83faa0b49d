package dicomwrite

import (
	"bytes"
	"math"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

func TestDS(t *testing.T) {
	for v, want := range map[float64]string{
		0.7: "0.7", -1024: "-1024", 1e-5: "0.00001", -175.39999999999998: "-175.4",
		0.1 + 0.2: "0.3", 12345678.9012345: "12345678.9012345", 1e20: "1e+20",
		0.05000000000001137: "0.05", // a demo slice position: 10 digits when the exact form is too long
	} {
		if got := DS(v); got != want {
			t.Errorf("DS(%v) = %q, want %q", v, got, want)
		}
	}
	// a value that needs more than 16 characters keeps 10 significant digits
	c := math.Cos(0.3)
	got := DS(c)
	back, err := strconv.ParseFloat(got, 64)
	if len(got) > 16 || err != nil || math.Abs(back-c) > 1e-10 {
		t.Errorf("DS(cos 0.3) = %q", got)
	}
}

// A dataset written and parsed back holds its elements, in tag order, with the file meta;
// an element it cannot make is the dataset's error.
func TestWriteRoundTrip(t *testing.T) {
	var d Dataset
	d.Add(tag.PatientID, "P1")
	d.Add(tag.InstanceNumber, 7)
	d.Add(tag.SliceThickness, 1.25)
	d.Add(tag.Modality, "CT")
	d.Code(tag.ConceptNameCodeSequence, "125007", "DCM", "Measurement Group")
	var buf bytes.Buffer
	if err := d.Write(&buf, CTImageStorage, "1.2.3", uid.ExplicitVRLittleEndian); err != nil {
		t.Fatal(err)
	}
	ds, err := dicom.Parse(&buf, int64(buf.Len()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for tg, want := range map[tag.Tag]string{tag.PatientID: "[P1]", tag.InstanceNumber: "[7]", tag.SliceThickness: "[1.25]",
		tag.MediaStorageSOPInstanceUID: "[1.2.3]", tag.ImplementationClassUID: "[" + ImplementationClassUID + "]"} {
		e, err := ds.FindElementByTag(tg)
		if err != nil || e.Value.String() != want {
			t.Errorf("%v: %v %v, want %s", tg, e, err, want)
		}
	}
	var bad Dataset
	bad.Add(tag.Tag{Group: 0x0011, Element: 0x1234}, "x") // not in the dictionary
	bad.Add(tag.PatientID, "P1")
	if _, err := bad.Elements(); err == nil {
		t.Error("an element of an unknown tag was accepted")
	}
}
