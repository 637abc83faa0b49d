package sr

import (
	"bytes"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func el(t *testing.T, tg tag.Tag, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func codeItem(t *testing.T, tg tag.Tag, value, scheme, meaning string) *dicom.Element {
	return el(t, tg, [][]*dicom.Element{{
		el(t, tag.CodeValue, []string{value}), el(t, tag.CodingSchemeDesignator, []string{scheme}), el(t, tag.CodeMeaning, []string{meaning})}})
}

// An SR written with suyashkumar/dicom and read back gives the same box as the JSON path.
func TestFromDataset(t *testing.T) {
	image := [][]*dicom.Element{{
		el(t, tag.RelationshipType, []string{"SELECTED FROM"}), el(t, tag.ValueType, []string{"IMAGE"}),
		el(t, tag.ReferencedSOPSequence, [][]*dicom.Element{{
			el(t, tag.ReferencedSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
			el(t, tag.ReferencedSOPInstanceUID, []string{"9.8.7"})}}),
	}}
	group := [][]*dicom.Element{{
		el(t, tag.RelationshipType, []string{"CONTAINS"}), el(t, tag.ValueType, []string{"CONTAINER"}),
		codeItem(t, tag.ConceptNameCodeSequence, "125007", "DCM", "Measurement Group"),
		el(t, tag.ContentSequence, [][]*dicom.Element{
			{el(t, tag.ValueType, []string{"TEXT"}), codeItem(t, tag.ConceptNameCodeSequence, "112039", "DCM", "Tracking Identifier"),
				el(t, tag.TextValue, []string{"Bounding box #1"})},
			{el(t, tag.ValueType, []string{"UIDREF"}), codeItem(t, tag.ConceptNameCodeSequence, "112040", "DCM", "Tracking Unique Identifier"),
				el(t, tag.UID, []string{"1.2.3.4"})},
			{el(t, tag.ValueType, []string{"SCOORD"}), codeItem(t, tag.ConceptNameCodeSequence, "111030", "DCM", "Image Region"),
				el(t, tag.GraphicType, []string{"POLYLINE"}),
				el(t, tag.GraphicData, []float64{130.25, 200.5, 140, 200.5, 140, 210.25, 130.25, 210.25, 130.25, 200.5}),
				el(t, tag.ContentSequence, image)},
		}),
	}}
	ds := dicom.Dataset{Elements: []*dicom.Element{
		el(t, tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.88.34"}),
		el(t, tag.MediaStorageSOPInstanceUID, []string{"1.2.3.9"}),
		el(t, tag.TransferSyntaxUID, []string{"1.2.840.10008.1.2.1"}),
		el(t, tag.ValueType, []string{"CONTAINER"}),
		el(t, tag.CurrentRequestedProcedureEvidenceSequence, [][]*dicom.Element{{
			el(t, tag.ReferencedSeriesSequence, [][]*dicom.Element{{el(t, tag.SeriesInstanceUID, []string{"1.2.3"})}})}}),
		el(t, tag.ContentSequence, [][]*dicom.Element{{
			el(t, tag.ValueType, []string{"CONTAINER"}), codeItem(t, tag.ConceptNameCodeSequence, "126010", "DCM", "Imaging Measurements"),
			el(t, tag.ContentSequence, group)}}),
	}}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds, dicom.SkipVRVerification(), dicom.DefaultMissingTransferSyntax()); err != nil {
		t.Fatal(err)
	}
	back, err := dicom.Parse(&buf, int64(buf.Len()), nil)
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := FromDataset(&back)
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) != 1 || boxes[0].Err != nil {
		t.Fatalf("boxes %+v", boxes)
	}
	b := boxes[0]
	x0, y0, x1, y1 := b.Rect()
	if b.TrackingID != "Bounding box #1" || b.TrackingUID != "1.2.3.4" || b.SOPInstanceUID != "9.8.7" ||
		x0 != 130.25 || y0 != 200.5 || x1 != 140 || y1 != 210.25 {
		t.Errorf("box %+v", b)
	}
	ev, err := EvidenceFromDataset(&back)
	if err != nil || len(ev) != 1 || ev[0] != "1.2.3" {
		t.Errorf("evidence %v %v", ev, err)
	}
}
