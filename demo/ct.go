package demo

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// stored converts HU to the stored pixel value of the series (slope 1): signed series store
// int16 bit patterns; unsigned series are clamped to the BitsStored range.
func (s *ctSeries) stored(hu int16) uint16 {
	v := int(hu) - int(s.Intercept)
	if s.Signed {
		return uint16(int16(max(math.MinInt16, min(math.MaxInt16, v))))
	}
	return uint16(max(0, min(1<<s.BitsStored-1, v)))
}

// writeCTSlice writes slice k (z index) of the patient's CT series as a CT Image Storage
// file: Patient, General Study, General Series, Frame of Reference, General Equipment,
// General Image, Image Plane, Image Pixel, CT Image and SOP Common modules.
func (p *patient) writeCTSlice(w io.Writer, k int, hu []int16) error {
	s := &p.CT
	in := &s.Instances[k]
	ipp := s.ipp(k)
	var e elems
	p.patientStudy(&e)
	e.add(tag.SOPClassUID, sopCTImage)
	e.add(tag.SOPInstanceUID, in.SOPUID)
	e.add(tag.Modality, "CT")
	e.add(tag.SeriesInstanceUID, s.UID)
	e.add(tag.SeriesNumber, s.SeriesNumber)
	e.add(tag.SeriesDescription, fmt.Sprintf("LUNG %.4g mm (synthetic)", s.Thickness))
	e.add(tag.BodyPartExamined, "CHEST")
	e.add(tag.PatientPosition, "HFS")
	e.add(tag.Laterality, []string{})
	e.add(tag.FrameOfReferenceUID, s.FrameOfReference)
	e.add(tag.PositionReferenceIndicator, []string{})
	e.add(tag.Manufacturer, "connectome demo generator")
	e.add(tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"})
	e.add(tag.InstanceNumber, in.Number)
	e.add(tag.AcquisitionNumber, 1)
	e.add(tag.ImagePositionPatient, ipp[:])
	e.add(tag.ImageOrientationPatient, []float64{1, 0, 0, 0, 1, 0})
	e.add(tag.PixelSpacing, []float64{s.Spacing, s.Spacing})
	e.add(tag.SliceThickness, s.Thickness)
	e.add(tag.SliceLocation, ipp[2])
	e.add(tag.SamplesPerPixel, []int{1})
	e.add(tag.PhotometricInterpretation, "MONOCHROME2")
	e.add(tag.Rows, []int{s.Rows})
	e.add(tag.Columns, []int{s.Cols})
	e.add(tag.BitsAllocated, []int{16})
	e.add(tag.BitsStored, []int{s.BitsStored})
	e.add(tag.HighBit, []int{s.BitsStored - 1})
	pr := 0
	if s.Signed {
		pr = 1
	}
	e.add(tag.PixelRepresentation, []int{pr})
	e.add(tag.RescaleIntercept, s.Intercept)
	e.add(tag.RescaleSlope, 1.0)
	e.add(tag.RescaleType, "HU")
	e.add(tag.KVP, 120.0)
	e.add(tag.WindowCenter, -600.0)
	e.add(tag.WindowWidth, 1500.0)
	// The pixel bytes are handed over ready-made: the library's native-frame path writes
	// sample by sample and costs more than drawing the slice.
	px := make([]byte, 2*len(hu))
	for i, v := range hu {
		binary.LittleEndian.PutUint16(px[2*i:], s.stored(v))
	}
	e.add(tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: px})
	return writeDataset(w, &e, sopCTImage, in.SOPUID)
}

// patientStudy adds the Patient and General Study modules shared by the CT and the SR.
func (p *patient) patientStudy(e *elems) {
	e.add(tag.SpecificCharacterSet, "ISO_IR 100")
	e.add(tag.PatientName, "Demo^"+p.PatientID)
	e.add(tag.PatientID, p.PatientID)
	e.add(tag.PatientBirthDate, []string{})
	sex := "M"
	if p.Gender == "2" {
		sex = "F"
	}
	e.add(tag.PatientSex, sex)
	e.add(tag.PatientAge, fmt.Sprintf("%03dY", p.Age))
	e.add(tag.StudyInstanceUID, p.StudyUID)
	e.add(tag.StudyDate, p.StudyDate)
	e.add(tag.StudyTime, "000000")
	e.add(tag.ReferringPhysicianName, []string{})
	e.add(tag.StudyID, "1")
	e.add(tag.AccessionNumber, []string{})
	e.add(tag.StudyDescription, "Synthetic low-dose chest CT (connectome demo)")
}
