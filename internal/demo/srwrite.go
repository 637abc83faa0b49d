package demo

import (
	"fmt"
	"io"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	dicomuid "github.com/suyashkumar/dicom/pkg/uid"

	"connectome/internal/dicomio/dicomwrite"
)

// sopComprehensive3DSR is the SOP class of the SR the generator writes.
const sopComprehensive3DSR = "1.2.840.10008.5.1.4.1.1.88.34"

// srBox is one bounding box of the SR: a tumour's extent on one CT slice.
type srBox struct {
	Slice       int // z index
	Box         box
	TrackingID  string // "Bounding box #k"
	TrackingUID string
}

// numberBoxes orders the boxes as the NLST-Sybil SRs do (by the referenced slice's
// ImagePositionPatient z, ascending) and gives them their tracking identifier and UID.
func (p *patient) numberBoxes(seed int64, boxes []srBox) []srBox {
	out := sortedBy(boxes, func(b srBox) float64 { return p.CT.z(b.Slice)*1e3 + float64(b.Box.Tumour) })
	for k := range out {
		out[k].TrackingID = fmt.Sprintf("Bounding box #%d", k+1)
		out[k].TrackingUID = uid(seed, "tracking", p.Index, k)
	}
	return out
}

// writeSR writes the patient's NLST-Sybil-style SR: a Comprehensive 3D SR with template
// TID 1500 holding one TID 1410 planar ROI measurement group per box (tracking identifier and
// UID, finding "Lesion", finding site lung, and a 5-point closed POLYLINE in the pixel
// coordinates of the referenced slice, SELECTED FROM that CT image); its evidence sequence
// lists the annotated CT images (idc-data-model.md §1.2).
func (p *patient) writeSR(w io.Writer, boxes []srBox) error {
	s := &p.CT
	var e dicomwrite.Dataset
	p.patientStudy(&e)
	e.Add(tag.SOPClassUID, sopComprehensive3DSR)
	e.Add(tag.SOPInstanceUID, p.SR.SOPUID)
	e.Add(tag.Modality, "SR")
	e.Add(tag.SeriesInstanceUID, p.SR.SeriesUID)
	e.Add(tag.SeriesNumber, p.SR.SeriesNumber)
	e.Add(tag.SeriesDescription, "Sybil lesion bounding box (synthetic)")
	e.Add(tag.Manufacturer, "connectome demo generator")
	e.Add(tag.InstanceNumber, 1)
	e.Add(tag.ContentDate, p.StudyDate)
	e.Add(tag.ContentTime, "000000")
	e.Seq(tag.ReferencedPerformedProcedureStepSequence)
	e.Seq(tag.PerformedProcedureCodeSequence)
	e.Add(tag.CompletionFlag, "COMPLETE")
	e.Add(tag.VerificationFlag, "UNVERIFIED")
	e.Add(tag.PreliminaryFlag, "FINAL")

	// Evidence: the annotated CT images, once each, in slice order.
	seen := map[int]bool{}
	var refs [][]*dicom.Element
	for _, b := range sortedBy(boxes, func(b srBox) int { return b.Slice }) {
		if seen[b.Slice] {
			continue
		}
		seen[b.Slice] = true
		refs = append(refs, sopRef(&e, s.Instances[b.Slice].SOPUID))
	}
	e.Seq(tag.CurrentRequestedProcedureEvidenceSequence, e.Item(func(st *dicomwrite.Dataset) {
		st.Add(tag.StudyInstanceUID, p.StudyUID)
		st.Seq(tag.ReferencedSeriesSequence, st.Item(func(se *dicomwrite.Dataset) {
			se.Add(tag.SeriesInstanceUID, s.UID)
			se.Seq(tag.ReferencedSOPSequence, refs...)
		}))
	}))

	// Root container: Imaging Measurement Report (TID 1500).
	e.Add(tag.ValueType, "CONTAINER")
	e.Code(tag.ConceptNameCodeSequence, "126000", "DCM", "Imaging Measurement Report")
	e.Add(tag.ContinuityOfContent, "SEPARATE")
	template(&e, "1500")
	content := [][]*dicom.Element{
		codeItem(&e, "HAS CONCEPT MOD", [3]string{"121049", "DCM", "Language of Content Item and Descendants"}, [3]string{"en-US", "RFC5646", "English (United States)"}),
		codeItem(&e, "HAS OBS CONTEXT", [3]string{"121005", "DCM", "Observer Type"}, [3]string{"121006", "DCM", "Person"}),
		e.Item(func(c *dicomwrite.Dataset) {
			c.Add(tag.RelationshipType, "HAS OBS CONTEXT")
			c.Add(tag.ValueType, "PNAME")
			c.Code(tag.ConceptNameCodeSequence, "121008", "DCM", "Person Observer Name")
			c.Add(tag.PersonName, "Anonymous^Reader")
		}),
		codeItem(&e, "HAS CONCEPT MOD", [3]string{"121058", "DCM", "Procedure reported"}, [3]string{"363679005", "SCT", "Imaging procedure"}),
		e.Item(func(c *dicomwrite.Dataset) {
			c.Add(tag.RelationshipType, "CONTAINS")
			c.Add(tag.ValueType, "CONTAINER")
			c.Code(tag.ConceptNameCodeSequence, "111028", "DCM", "Image Library")
			c.Add(tag.ContinuityOfContent, "SEPARATE")
			c.Seq(tag.ContentSequence, c.Item(func(g *dicomwrite.Dataset) {
				g.Add(tag.RelationshipType, "CONTAINS")
				g.Add(tag.ValueType, "CONTAINER")
				g.Code(tag.ConceptNameCodeSequence, "126200", "DCM", "Image Library Group")
				g.Add(tag.ContinuityOfContent, "SEPARATE")
				var entries [][]*dicom.Element
				for _, r := range refs {
					entries = append(entries, g.Item(func(im *dicomwrite.Dataset) {
						im.Add(tag.RelationshipType, "CONTAINS")
						im.Add(tag.ValueType, "IMAGE")
						im.Seq(tag.ReferencedSOPSequence, r)
					}))
				}
				g.Seq(tag.ContentSequence, entries...)
			}))
		}),
	}
	var groups [][]*dicom.Element
	for _, b := range boxes {
		groups = append(groups, group(&e, b, s.Instances[b.Slice].SOPUID))
	}
	content = append(content, e.Item(func(c *dicomwrite.Dataset) {
		c.Add(tag.RelationshipType, "CONTAINS")
		c.Add(tag.ValueType, "CONTAINER")
		c.Code(tag.ConceptNameCodeSequence, "126010", "DCM", "Imaging Measurements")
		c.Add(tag.ContinuityOfContent, "SEPARATE")
		c.Seq(tag.ContentSequence, groups...)
	}))
	e.Seq(tag.ContentSequence, content...)
	return e.Write(w, sopComprehensive3DSR, p.SR.SOPUID, dicomuid.ExplicitVRLittleEndian)
}

// group is one TID 1410 planar ROI measurement group.
func group(e *dicomwrite.Dataset, b srBox, sop string) []*dicom.Element {
	x0, y0 := float64(b.Box.C0), float64(b.Box.R0)
	x1, y1 := float64(b.Box.C1+1), float64(b.Box.R1+1) // pixel edges: pixel i spans [i, i+1)
	return e.Item(func(g *dicomwrite.Dataset) {
		g.Add(tag.RelationshipType, "CONTAINS")
		g.Add(tag.ValueType, "CONTAINER")
		g.Code(tag.ConceptNameCodeSequence, "125007", "DCM", "Measurement Group")
		g.Add(tag.ContinuityOfContent, "SEPARATE")
		template(g, "1410")
		g.Seq(tag.ContentSequence,
			g.Item(func(c *dicomwrite.Dataset) {
				c.Add(tag.RelationshipType, "HAS OBS CONTEXT")
				c.Add(tag.ValueType, "TEXT")
				c.Code(tag.ConceptNameCodeSequence, "112039", "DCM", "Tracking Identifier")
				c.Add(tag.TextValue, b.TrackingID)
			}),
			g.Item(func(c *dicomwrite.Dataset) {
				c.Add(tag.RelationshipType, "HAS OBS CONTEXT")
				c.Add(tag.ValueType, "UIDREF")
				c.Code(tag.ConceptNameCodeSequence, "112040", "DCM", "Tracking Unique Identifier")
				c.Add(tag.UID, b.TrackingUID)
			}),
			codeItem(g, "CONTAINS", [3]string{"121071", "DCM", "Finding"}, [3]string{"52988006", "SCT", "Lesion"}),
			codeItem(g, "HAS CONCEPT MOD", [3]string{"363698007", "SCT", "Finding Site"}, [3]string{"39607008", "SCT", "Lung"}),
			codeItem(g, "HAS CONCEPT MOD", [3]string{"130400", "DCM", "Geometric purpose of region"}, [3]string{"75958009", "SCT", "Bounded by"}),
			g.Item(func(c *dicomwrite.Dataset) {
				c.Add(tag.RelationshipType, "CONTAINS")
				c.Add(tag.ValueType, "SCOORD")
				c.Code(tag.ConceptNameCodeSequence, "111030", "DCM", "Image Region")
				c.Add(tag.GraphicType, "POLYLINE")
				c.Add(tag.GraphicData, []float64{x0, y0, x1, y0, x1, y1, x0, y1, x0, y0})
				c.Seq(tag.ContentSequence, c.Item(func(im *dicomwrite.Dataset) {
					im.Add(tag.RelationshipType, "SELECTED FROM")
					im.Add(tag.ValueType, "IMAGE")
					im.Seq(tag.ReferencedSOPSequence, sopRef(im, sop))
				}))
			}),
		)
	})
}

// sopRef is a ReferencedSOPSequence item for a CT image.
func sopRef(e *dicomwrite.Dataset, sop string) []*dicom.Element {
	return e.Item(func(r *dicomwrite.Dataset) {
		r.Add(tag.ReferencedSOPClassUID, dicomwrite.CTImageStorage)
		r.Add(tag.ReferencedSOPInstanceUID, sop)
	})
}

// template adds a one-item ContentTemplateSequence (DCMR TID).
func template(e *dicomwrite.Dataset, tid string) {
	e.Seq(tag.ContentTemplateSequence, e.Item(func(t *dicomwrite.Dataset) {
		t.Add(tag.MappingResource, "DCMR")
		t.Add(tag.TemplateIdentifier, tid)
	}))
}

// codeItem is a content item of value type CODE: its concept name and its concept code, each
// (code value, coding scheme, meaning).
func codeItem(e *dicomwrite.Dataset, relationship string, name, value [3]string) []*dicom.Element {
	return e.Item(func(c *dicomwrite.Dataset) {
		c.Add(tag.RelationshipType, relationship)
		c.Add(tag.ValueType, "CODE")
		c.Code(tag.ConceptNameCodeSequence, name[0], name[1], name[2])
		c.Code(tag.ConceptCodeSequence, value[0], value[1], value[2])
	})
}
