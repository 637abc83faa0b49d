package demo

import (
	"fmt"
	"io"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

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
	var e elems
	p.patientStudy(&e)
	e.add(tag.SOPClassUID, sopComprehensive3DSR)
	e.add(tag.SOPInstanceUID, p.SR.SOPUID)
	e.add(tag.Modality, "SR")
	e.add(tag.SeriesInstanceUID, p.SR.SeriesUID)
	e.add(tag.SeriesNumber, p.SR.SeriesNumber)
	e.add(tag.SeriesDescription, "Sybil lesion bounding box (synthetic)")
	e.add(tag.Manufacturer, "connectome demo generator")
	e.add(tag.InstanceNumber, 1)
	e.add(tag.ContentDate, p.StudyDate)
	e.add(tag.ContentTime, "000000")
	e.seq(tag.ReferencedPerformedProcedureStepSequence)
	e.seq(tag.PerformedProcedureCodeSequence)
	e.add(tag.CompletionFlag, "COMPLETE")
	e.add(tag.VerificationFlag, "UNVERIFIED")
	e.add(tag.PreliminaryFlag, "FINAL")

	// Evidence: the annotated CT images, once each, in slice order.
	seen := map[int]bool{}
	var refs [][]*dicom.Element
	for _, b := range sortedBy(boxes, func(b srBox) int { return b.Slice }) {
		if seen[b.Slice] {
			continue
		}
		seen[b.Slice] = true
		refs = append(refs, e.sopRef(s.Instances[b.Slice].SOPUID))
	}
	e.seq(tag.CurrentRequestedProcedureEvidenceSequence, e.item(func(st *elems) {
		st.add(tag.StudyInstanceUID, p.StudyUID)
		st.seq(tag.ReferencedSeriesSequence, st.item(func(se *elems) {
			se.add(tag.SeriesInstanceUID, s.UID)
			se.seq(tag.ReferencedSOPSequence, refs...)
		}))
	}))

	// Root container: Imaging Measurement Report (TID 1500).
	e.add(tag.ValueType, "CONTAINER")
	e.code(tag.ConceptNameCodeSequence, "126000", "DCM", "Imaging Measurement Report")
	e.add(tag.ContinuityOfContent, "SEPARATE")
	e.template("1500")
	content := [][]*dicom.Element{
		e.codeItem("HAS CONCEPT MOD", [3]string{"121049", "DCM", "Language of Content Item and Descendants"}, [3]string{"en-US", "RFC5646", "English (United States)"}),
		e.codeItem("HAS OBS CONTEXT", [3]string{"121005", "DCM", "Observer Type"}, [3]string{"121006", "DCM", "Person"}),
		e.item(func(c *elems) {
			c.add(tag.RelationshipType, "HAS OBS CONTEXT")
			c.add(tag.ValueType, "PNAME")
			c.code(tag.ConceptNameCodeSequence, "121008", "DCM", "Person Observer Name")
			c.add(tag.PersonName, "Anonymous^Reader")
		}),
		e.codeItem("HAS CONCEPT MOD", [3]string{"121058", "DCM", "Procedure reported"}, [3]string{"363679005", "SCT", "Imaging procedure"}),
		e.item(func(c *elems) {
			c.add(tag.RelationshipType, "CONTAINS")
			c.add(tag.ValueType, "CONTAINER")
			c.code(tag.ConceptNameCodeSequence, "111028", "DCM", "Image Library")
			c.add(tag.ContinuityOfContent, "SEPARATE")
			c.seq(tag.ContentSequence, c.item(func(g *elems) {
				g.add(tag.RelationshipType, "CONTAINS")
				g.add(tag.ValueType, "CONTAINER")
				g.code(tag.ConceptNameCodeSequence, "126200", "DCM", "Image Library Group")
				g.add(tag.ContinuityOfContent, "SEPARATE")
				var entries [][]*dicom.Element
				for _, r := range refs {
					entries = append(entries, g.item(func(im *elems) {
						im.add(tag.RelationshipType, "CONTAINS")
						im.add(tag.ValueType, "IMAGE")
						im.seq(tag.ReferencedSOPSequence, r)
					}))
				}
				g.seq(tag.ContentSequence, entries...)
			}))
		}),
	}
	var groups [][]*dicom.Element
	for _, b := range boxes {
		groups = append(groups, e.group(b, s.Instances[b.Slice].SOPUID))
	}
	content = append(content, e.item(func(c *elems) {
		c.add(tag.RelationshipType, "CONTAINS")
		c.add(tag.ValueType, "CONTAINER")
		c.code(tag.ConceptNameCodeSequence, "126010", "DCM", "Imaging Measurements")
		c.add(tag.ContinuityOfContent, "SEPARATE")
		c.seq(tag.ContentSequence, groups...)
	}))
	e.seq(tag.ContentSequence, content...)
	return writeDataset(w, &e, sopComprehensive3DSR, p.SR.SOPUID)
}

// group is one TID 1410 planar ROI measurement group.
func (e *elems) group(b srBox, sop string) []*dicom.Element {
	x0, y0 := float64(b.Box.C0), float64(b.Box.R0)
	x1, y1 := float64(b.Box.C1+1), float64(b.Box.R1+1) // pixel edges: pixel i spans [i, i+1)
	return e.item(func(g *elems) {
		g.add(tag.RelationshipType, "CONTAINS")
		g.add(tag.ValueType, "CONTAINER")
		g.code(tag.ConceptNameCodeSequence, "125007", "DCM", "Measurement Group")
		g.add(tag.ContinuityOfContent, "SEPARATE")
		g.template("1410")
		g.seq(tag.ContentSequence,
			g.item(func(c *elems) {
				c.add(tag.RelationshipType, "HAS OBS CONTEXT")
				c.add(tag.ValueType, "TEXT")
				c.code(tag.ConceptNameCodeSequence, "112039", "DCM", "Tracking Identifier")
				c.add(tag.TextValue, b.TrackingID)
			}),
			g.item(func(c *elems) {
				c.add(tag.RelationshipType, "HAS OBS CONTEXT")
				c.add(tag.ValueType, "UIDREF")
				c.code(tag.ConceptNameCodeSequence, "112040", "DCM", "Tracking Unique Identifier")
				c.add(tag.UID, b.TrackingUID)
			}),
			g.codeItem("CONTAINS", [3]string{"121071", "DCM", "Finding"}, [3]string{"52988006", "SCT", "Lesion"}),
			g.codeItem("HAS CONCEPT MOD", [3]string{"363698007", "SCT", "Finding Site"}, [3]string{"39607008", "SCT", "Lung"}),
			g.codeItem("HAS CONCEPT MOD", [3]string{"130400", "DCM", "Geometric purpose of region"}, [3]string{"75958009", "SCT", "Bounded by"}),
			g.item(func(c *elems) {
				c.add(tag.RelationshipType, "CONTAINS")
				c.add(tag.ValueType, "SCOORD")
				c.code(tag.ConceptNameCodeSequence, "111030", "DCM", "Image Region")
				c.add(tag.GraphicType, "POLYLINE")
				c.add(tag.GraphicData, []float64{x0, y0, x1, y0, x1, y1, x0, y1, x0, y0})
				c.seq(tag.ContentSequence, c.item(func(im *elems) {
					im.add(tag.RelationshipType, "SELECTED FROM")
					im.add(tag.ValueType, "IMAGE")
					im.seq(tag.ReferencedSOPSequence, im.sopRef(sop))
				}))
			}),
		)
	})
}

// sopRef is a ReferencedSOPSequence item for a CT image.
func (e *elems) sopRef(sop string) []*dicom.Element {
	return e.item(func(r *elems) {
		r.add(tag.ReferencedSOPClassUID, sopCTImage)
		r.add(tag.ReferencedSOPInstanceUID, sop)
	})
}

// template adds a one-item ContentTemplateSequence (DCMR TID).
func (e *elems) template(tid string) {
	e.seq(tag.ContentTemplateSequence, e.item(func(t *elems) {
		t.add(tag.MappingResource, "DCMR")
		t.add(tag.TemplateIdentifier, tid)
	}))
}

// codeItem is a content item of value type CODE: its concept name and its concept code, each
// (code value, coding scheme, meaning).
func (e *elems) codeItem(relationship string, name, value [3]string) []*dicom.Element {
	return e.item(func(c *elems) {
		c.add(tag.RelationshipType, relationship)
		c.add(tag.ValueType, "CODE")
		c.code(tag.ConceptNameCodeSequence, name[0], name[1], name[2])
		c.code(tag.ConceptCodeSequence, value[0], value[1], value[2])
	})
}
