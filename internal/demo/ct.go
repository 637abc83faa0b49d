package demo

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	dicomuid "github.com/suyashkumar/dicom/pkg/uid"

	"connectome/internal/dicomio/dicomwrite"
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
	var e dicomwrite.Dataset
	p.patientStudy(&e)
	e.Add(tag.SOPClassUID, dicomwrite.CTImageStorage)
	e.Add(tag.SOPInstanceUID, in.SOPUID)
	e.Add(tag.Modality, "CT")
	e.Add(tag.SeriesInstanceUID, s.UID)
	e.Add(tag.SeriesNumber, s.SeriesNumber)
	e.Add(tag.SeriesDescription, fmt.Sprintf("LUNG %.4g mm (synthetic)", s.Thickness))
	e.Add(tag.BodyPartExamined, "CHEST")
	e.Add(tag.PatientPosition, "HFS")
	e.Add(tag.Laterality, []string{})
	e.Add(tag.FrameOfReferenceUID, s.FrameOfReference)
	e.Add(tag.PositionReferenceIndicator, []string{})
	e.Add(tag.Manufacturer, "connectome demo generator")
	e.Add(tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"})
	e.Add(tag.InstanceNumber, in.Number)
	e.Add(tag.AcquisitionNumber, 1)
	e.Add(tag.ImagePositionPatient, ipp[:])
	e.Add(tag.ImageOrientationPatient, []float64{1, 0, 0, 0, 1, 0})
	e.Add(tag.PixelSpacing, []float64{s.Spacing, s.Spacing})
	e.Add(tag.SliceThickness, s.Thickness)
	e.Add(tag.SliceLocation, ipp[2])
	e.Add(tag.SamplesPerPixel, []int{1})
	e.Add(tag.PhotometricInterpretation, "MONOCHROME2")
	e.Add(tag.Rows, []int{s.Rows})
	e.Add(tag.Columns, []int{s.Cols})
	e.Add(tag.BitsAllocated, []int{16})
	e.Add(tag.BitsStored, []int{s.BitsStored})
	e.Add(tag.HighBit, []int{s.BitsStored - 1})
	pr := 0
	if s.Signed {
		pr = 1
	}
	e.Add(tag.PixelRepresentation, []int{pr})
	e.Add(tag.RescaleIntercept, s.Intercept)
	e.Add(tag.RescaleSlope, 1.0)
	e.Add(tag.RescaleType, "HU")
	e.Add(tag.KVP, 120.0)
	e.Add(tag.WindowCenter, -600.0)
	e.Add(tag.WindowWidth, 1500.0)
	// The pixel bytes are handed over ready-made: the library's native-frame path writes
	// sample by sample and costs more than drawing the slice.
	px := make([]byte, 2*len(hu))
	for i, v := range hu {
		binary.LittleEndian.PutUint16(px[2*i:], s.stored(v))
	}
	e.Add(tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: px})
	return e.Write(w, dicomwrite.CTImageStorage, in.SOPUID, dicomuid.ExplicitVRLittleEndian)
}

// patientStudy adds the Patient and General Study modules shared by the CT and the SR.
func (p *patient) patientStudy(e *dicomwrite.Dataset) {
	e.Add(tag.SpecificCharacterSet, "ISO_IR 100")
	e.Add(tag.PatientName, "Demo^"+p.PatientID)
	e.Add(tag.PatientID, p.PatientID)
	e.Add(tag.PatientBirthDate, []string{})
	sex := "M"
	if p.Gender == "2" {
		sex = "F"
	}
	e.Add(tag.PatientSex, sex)
	e.Add(tag.PatientAge, fmt.Sprintf("%03dY", p.Age))
	e.Add(tag.StudyInstanceUID, p.StudyUID)
	e.Add(tag.StudyDate, p.StudyDate)
	e.Add(tag.StudyTime, "000000")
	e.Add(tag.ReferringPhysicianName, []string{})
	e.Add(tag.StudyID, "1")
	e.Add(tag.AccessionNumber, []string{})
	e.Add(tag.StudyDescription, "Synthetic low-dose chest CT (connectome demo)")
}
