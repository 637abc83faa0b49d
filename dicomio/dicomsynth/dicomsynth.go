// Package dicomsynth writes synthetic CT series as real DICOM files (CT Image Storage,
// uncompressed, one slice per file) from a voxel function: test fixtures and demo data that
// pydicom, dcmtk and our reader all accept.
package dicomsynth

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"connectome/atomicfile"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// CTImageStorage is the SOP class of every file written.
const CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// Series describes a synthetic axial (or any IOP) CT series.
type Series struct {
	Rows, Columns int
	Slices        int
	PixelSpacing  [2]float64 // row spacing, column spacing (DICOM order), mm
	SliceSpacing  float64    // mm between slices along the normal
	Origin        [3]float64 // ImagePositionPatient of the first slice in ascending order
	IOP           [6]float64 // zero: axial [1,0,0,0,1,0]
	Signed        bool       // PixelRepresentation 1 (int16), else uint16
	Slope         float64    // zero: 1
	Intercept     float64
	Implicit      bool  // Implicit VR Little Endian, else Explicit
	Descending    bool  // store (file order, instance numbers) from the last slice down
	Shuffle       int64 // non-zero: instance numbers are a random permutation with this seed
	// HU gives the value at column i, row j of slice k (k in ascending order along the normal).
	HU func(i, j, k int) float64

	PatientID, StudyUID, SeriesUID string // defaults derived from the geometry
	// Edit, when set, may change slice k's elements before they are sorted and written
	// (tests use it to break a series on purpose).
	Edit func(k int, elems []*dicom.Element) []*dicom.Element
	// Position, when set, overrides the ImagePositionPatient of slice k.
	Position func(k int) [3]float64
}

func (s *Series) defaults() {
	if s.IOP == [6]float64{} {
		s.IOP = [6]float64{1, 0, 0, 0, 1, 0}
	}
	if s.Slope == 0 {
		s.Slope = 1
	}
	if s.SeriesUID == "" {
		s.SeriesUID = "2.25.1" + strconv.Itoa(s.Rows) + strconv.Itoa(s.Columns) + strconv.Itoa(s.Slices)
	}
	if s.StudyUID == "" {
		s.StudyUID = s.SeriesUID + ".1"
	}
	if s.PatientID == "" {
		s.PatientID = "SYNTH"
	}
}

// ds formats a decimal string value (DS allows 16 characters).
func ds(v float64) string {
	for prec := -1; ; {
		s := strconv.FormatFloat(v, 'g', prec, 64)
		if len(s) <= 16 {
			return s
		}
		if prec < 0 {
			prec = 15
		}
		prec--
	}
}

// Position is ImagePositionPatient of ascending slice k.
func (s *Series) position(k int) [3]float64 {
	if s.Position != nil {
		return s.Position(k)
	}
	n := [3]float64{
		s.IOP[1]*s.IOP[5] - s.IOP[2]*s.IOP[4],
		s.IOP[2]*s.IOP[3] - s.IOP[0]*s.IOP[5],
		s.IOP[0]*s.IOP[4] - s.IOP[1]*s.IOP[3],
	}
	var p [3]float64
	for a := 0; a < 3; a++ {
		p[a] = s.Origin[a] + float64(k)*s.SliceSpacing*n[a]
	}
	return p
}

// Write writes the series into dir as IM00001.dcm, IM00002.dcm, … in storage order and
// returns the paths.
func (s Series) Write(dir string) ([]string, error) {
	s.defaults()
	if s.Rows <= 0 || s.Columns <= 0 || s.Slices <= 0 || s.HU == nil {
		return nil, fmt.Errorf("dicomsynth: need rows, columns, slices and HU")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	order := make([]int, s.Slices) // storage position → ascending slice index
	for p := range order {
		order[p] = p
		if s.Descending {
			order[p] = s.Slices - 1 - p
		}
	}
	inst := make([]int, s.Slices) // storage position → instance number
	for p := range inst {
		inst[p] = p + 1
	}
	if s.Shuffle != 0 {
		r := rand.New(rand.NewPCG(uint64(s.Shuffle), 7))
		r.Shuffle(len(inst), func(a, b int) { inst[a], inst[b] = inst[b], inst[a] })
	}
	var paths []string
	for p, k := range order {
		path := filepath.Join(dir, fmt.Sprintf("IM%05d.dcm", p+1))
		elems, err := s.slice(k, inst[p])
		if err != nil {
			return nil, err
		}
		if s.Edit != nil {
			elems = s.Edit(k, elems)
		}
		// dicom.Write keeps element order; DICOM requires ascending tags
		sort.Slice(elems, func(a, b int) bool { return elems[a].Tag.Compare(elems[b].Tag) < 0 })
		err = atomicfile.Write(path, func(w io.Writer) error {
			return dicom.Write(w, dicom.Dataset{Elements: elems}, dicom.SkipVRVerification())
		})
		if err != nil {
			return nil, fmt.Errorf("dicomsynth: write %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func (s *Series) slice(k, instance int) ([]*dicom.Element, error) {
	sopUID := s.SeriesUID + "." + strconv.Itoa(instance)
	ts := uid.ExplicitVRLittleEndian
	if s.Implicit {
		ts = uid.ImplicitVRLittleEndian
	}
	pos := s.position(k)
	pixRep := 0
	if s.Signed {
		pixRep = 1
	}
	raw := make([]byte, 2*s.Rows*s.Columns)
	for j := 0; j < s.Rows; j++ {
		for i := 0; i < s.Columns; i++ {
			v := math.Round((s.HU(i, j, k) - s.Intercept) / s.Slope)
			var u uint16
			if s.Signed {
				u = uint16(int16(math.Max(-32768, math.Min(32767, v))))
			} else {
				u = uint16(math.Max(0, math.Min(65535, v)))
			}
			binary.LittleEndian.PutUint16(raw[2*(j*s.Columns+i):], u)
		}
	}
	var iop []string
	for _, v := range s.IOP {
		iop = append(iop, ds(v))
	}
	type kv struct {
		t tag.Tag
		v any
	}
	vals := []kv{
		{tag.FileMetaInformationVersion, []byte{0, 1}},
		{tag.MediaStorageSOPClassUID, []string{CTImageStorage}},
		{tag.MediaStorageSOPInstanceUID, []string{sopUID}},
		{tag.TransferSyntaxUID, []string{ts}},
		{tag.ImplementationClassUID, []string{"2.25.4242"}},
		{tag.SpecificCharacterSet, []string{"ISO_IR 100"}},
		{tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"}},
		{tag.SOPClassUID, []string{CTImageStorage}},
		{tag.SOPInstanceUID, []string{sopUID}},
		{tag.StudyDate, []string{"20000101"}},
		{tag.StudyTime, []string{"120000"}},
		{tag.AccessionNumber, []string{""}},
		{tag.Modality, []string{"CT"}},
		{tag.Manufacturer, []string{"connectome dicomsynth"}},
		{tag.ReferringPhysicianName, []string{""}},
		{tag.PatientName, []string{"SYNTH^PHANTOM"}},
		{tag.PatientID, []string{s.PatientID}},
		{tag.PatientBirthDate, []string{""}},
		{tag.PatientSex, []string{"O"}},
		{tag.SliceThickness, []string{ds(s.SliceSpacing)}},
		{tag.KVP, []string{"120"}},
		{tag.PatientPosition, []string{"FFS"}},
		{tag.StudyInstanceUID, []string{s.StudyUID}},
		{tag.SeriesInstanceUID, []string{s.SeriesUID}},
		{tag.StudyID, []string{"1"}},
		{tag.SeriesNumber, []string{"1"}},
		{tag.AcquisitionNumber, []string{"1"}},
		{tag.InstanceNumber, []string{strconv.Itoa(instance)}},
		{tag.ImagePositionPatient, []string{ds(pos[0]), ds(pos[1]), ds(pos[2])}},
		{tag.ImageOrientationPatient, iop},
		{tag.FrameOfReferenceUID, []string{s.SeriesUID + ".9"}},
		{tag.PositionReferenceIndicator, []string{""}},
		{tag.Laterality, []string{""}},
		{tag.SamplesPerPixel, []int{1}},
		{tag.PhotometricInterpretation, []string{"MONOCHROME2"}},
		{tag.Rows, []int{s.Rows}},
		{tag.Columns, []int{s.Columns}},
		{tag.PixelSpacing, []string{ds(s.PixelSpacing[0]), ds(s.PixelSpacing[1])}},
		{tag.BitsAllocated, []int{16}},
		{tag.BitsStored, []int{16}},
		{tag.HighBit, []int{15}},
		{tag.PixelRepresentation, []int{pixRep}},
		{tag.RescaleIntercept, []string{ds(s.Intercept)}},
		{tag.RescaleSlope, []string{ds(s.Slope)}},
		{tag.RescaleType, []string{"HU"}},
		{tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw}},
	}
	elems := make([]*dicom.Element, 0, len(vals))
	for _, e := range vals {
		el, err := dicom.NewElement(e.t, e.v)
		if err != nil {
			return nil, fmt.Errorf("dicomsynth: element %v: %w", e.t, err)
		}
		elems = append(elems, el)
	}
	return elems, nil
}
