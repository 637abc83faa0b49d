// Package dicomsynth writes synthetic CT series as real DICOM files (CT Image Storage,
// uncompressed, one slice per file) from a voxel function, with dicomwrite: test fixtures
// that pydicom, dcmtk and our reader all accept. Only tests import it.
package dicomsynth

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"connectome/internal/atomicfile"
	"connectome/internal/dicomio/dicomwrite"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

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
	order, inst := s.storageOrder()
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
		err = atomicfile.Write(path, func(w io.Writer) error { return dicomwrite.WriteElements(w, elems) })
		if err != nil {
			return nil, fmt.Errorf("dicomsynth: write %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// storageOrder returns, per storage position, the ascending slice index and the instance
// number.
func (s *Series) storageOrder() (order, inst []int) {
	order = make([]int, s.Slices)
	for p := range order {
		order[p] = p
		if s.Descending {
			order[p] = s.Slices - 1 - p
		}
	}
	inst = make([]int, s.Slices)
	for p := range inst {
		inst[p] = p + 1
	}
	if s.Shuffle != 0 {
		r := rand.New(rand.NewPCG(uint64(s.Shuffle), 7))
		r.Shuffle(len(inst), func(a, b int) { inst[a], inst[b] = inst[b], inst[a] })
	}
	return order, inst
}

// pixels returns slice k's stored values, little-endian.
func (s *Series) pixels(k int) []byte {
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
	return raw
}

// slice returns the elements of slice k (file meta included).
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
	var d dicomwrite.Dataset
	d.FileMeta(dicomwrite.CTImageStorage, sopUID, ts)
	d.Add(tag.SpecificCharacterSet, "ISO_IR 100")
	d.Add(tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"})
	d.Add(tag.SOPClassUID, dicomwrite.CTImageStorage)
	d.Add(tag.SOPInstanceUID, sopUID)
	d.Add(tag.StudyDate, "20000101")
	d.Add(tag.StudyTime, "120000")
	d.Add(tag.AccessionNumber, "")
	d.Add(tag.Modality, "CT")
	d.Add(tag.Manufacturer, "connectome dicomsynth")
	d.Add(tag.ReferringPhysicianName, "")
	d.Add(tag.PatientName, "SYNTH^PHANTOM")
	d.Add(tag.PatientID, s.PatientID)
	d.Add(tag.PatientBirthDate, "")
	d.Add(tag.PatientSex, "O")
	d.Add(tag.SliceThickness, s.SliceSpacing)
	d.Add(tag.KVP, "120")
	d.Add(tag.PatientPosition, "FFS")
	d.Add(tag.StudyInstanceUID, s.StudyUID)
	d.Add(tag.SeriesInstanceUID, s.SeriesUID)
	d.Add(tag.StudyID, "1")
	d.Add(tag.SeriesNumber, "1")
	d.Add(tag.AcquisitionNumber, "1")
	d.Add(tag.InstanceNumber, instance)
	d.Add(tag.ImagePositionPatient, pos[:])
	d.Add(tag.ImageOrientationPatient, s.IOP[:])
	d.Add(tag.FrameOfReferenceUID, s.SeriesUID+".9")
	d.Add(tag.PositionReferenceIndicator, "")
	d.Add(tag.Laterality, "")
	d.Add(tag.SamplesPerPixel, []int{1})
	d.Add(tag.PhotometricInterpretation, "MONOCHROME2")
	d.Add(tag.Rows, []int{s.Rows})
	d.Add(tag.Columns, []int{s.Columns})
	d.Add(tag.PixelSpacing, s.PixelSpacing[:])
	d.Add(tag.BitsAllocated, []int{16})
	d.Add(tag.BitsStored, []int{16})
	d.Add(tag.HighBit, []int{15})
	d.Add(tag.PixelRepresentation, []int{pixRep})
	d.Add(tag.RescaleIntercept, s.Intercept)
	d.Add(tag.RescaleSlope, s.Slope)
	d.Add(tag.RescaleType, "HU")
	d.Add(tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: s.pixels(k)})
	elems, err := d.Elements()
	if err != nil {
		return nil, fmt.Errorf("dicomsynth: %w", err)
	}
	return elems, nil
}
