package dicomio

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/suyashkumar/dicom/pkg/uid"

	"connectome/internal/patch"
)

// posTol is how far a file's ImagePositionPatient may be from the planned slice position
// (the instances table and the file carry the same decimal string; this allows for rounding).
const posTol = 1e-3

// LoadStats counts the I/O of one LoadBox.
type LoadStats struct {
	Files int
	Bytes int64 // read from disk: header prefixes and pixel rows (whole files where read whole)
}

// ReadSlice reads one file whole and parses its header; it returns the pixel data as native
// little-endian samples, decoding compressed syntaxes (codecs.go).
func ReadSlice(path string) (SliceHeader, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SliceHeader{}, nil, err
	}
	return sliceOf(path, b)
}

// sliceOf is ReadSlice of the file path whose bytes are b.
func sliceOf(path string, b []byte) (SliceHeader, []byte, error) {
	h, complete, err := parseHeaderPrefix(b, int64(len(b)))
	h.Path = path
	if err == nil && !complete {
		err = fmt.Errorf("truncated header")
	}
	if err != nil {
		return h, nil, fmt.Errorf("read slice %s: %w", path, err)
	}
	if h.pixelOffset < 0 || h.pixelOffset+h.pixelLength > int64(len(b)) {
		return h, nil, fmt.Errorf("read slice %s: pixel data outside the file: %w", path, ErrNoPixelData)
	}
	need := int64(h.Rows) * int64(h.Columns) * int64(h.BitsAllocated/8)
	if h.encapsulated {
		if h.SamplesPerPixel != 1 {
			return h, nil, fmt.Errorf("read slice %s: compressed pixel data of %d samples per pixel: %w", path, h.SamplesPerPixel, ErrUnsupported)
		}
		frame, err := encapsulatedFrame(b[h.pixelOffset : h.pixelOffset+h.pixelLength])
		if err == nil {
			b, err = frameDecoderFor(h.TransferSyntax)(frame, h)
		}
		if err != nil {
			return h, nil, fmt.Errorf("read slice %s: %w", path, err)
		}
		return h, b, nil
	}
	if h.pixelLength < need {
		return h, nil, fmt.Errorf("read slice %s: pixel data holds %d bytes, %d×%d×%d bits need %d: %w",
			path, h.pixelLength, h.Rows, h.Columns, h.BitsAllocated, need, ErrNoPixelData)
	}
	return h, b[h.pixelOffset : h.pixelOffset+need], nil
}

// LoadBox reads the input voxels [lo, hi] (inclusive, index axes i, j, k; clipped to the
// volume) into a patch.Volume: one file per slice k, decoding only the rows and columns in the
// box. Each file's header must agree with the planned slice.
func (s *Series) LoadBox(lo, hi [3]int) (*patch.Volume, LoadStats, error) {
	var st LoadStats
	n := s.Geometry.Size
	var dim [3]int
	for b := 0; b < 3; b++ {
		lo[b], hi[b] = max(lo[b], 0), min(hi[b], n[b]-1)
		dim[b] = max(hi[b]-lo[b]+1, 0)
	}
	vol := patch.NewVolume(n, lo, dim)
	if dim[0] == 0 || dim[1] == 0 || dim[2] == 0 {
		return vol, st, nil
	}
	for k := lo[2]; k <= hi[2]; k++ {
		plan := s.Slices[k]
		if plan.Path == "" {
			return nil, st, fmt.Errorf("slice %d (%s): no file", k, name(plan))
		}
		st.Files++
		// rows lo[1]..hi[1] of this slice; anything unusual (compressed, say) is decoded whole,
		// from the bytes the header pass read where they are the whole file
		h, raw, read, whole := readRows(plan.Path, lo[1], hi[1]+1)
		st.Bytes += read
		r0 := lo[1]
		if raw == nil {
			var err error
			if whole == nil {
				whole, err = os.ReadFile(plan.Path)
				st.Bytes += int64(len(whole))
			}
			if err == nil {
				h, raw, err = sliceOf(plan.Path, whole)
			}
			if err != nil {
				return nil, st, err
			}
			r0 = 0
		}
		if err := agrees(plan, h); err != nil {
			return nil, st, fmt.Errorf("slice %s: %w", plan.Path, err)
		}
		decode(vol, k-lo[2], h, raw, r0, lo, dim)
	}
	return vol, st, nil
}

// readRows reads the header of one file, then only the pixel rows [r0, r1) with one ReadAt
// (rows the header prefix already holds are copied, not read again). It returns the raw rows
// and the bytes read from disk. raw is nil where the file is not single-frame, native,
// little-endian, 16-bit pixel data of exactly Rows×Columns×2 bytes, where [r0, r1) is not
// inside the image, or on any error: the caller then decodes the file whole (sliceOf), which
// names the error, from whole where the header pass already read all of it (an encapsulated
// Pixel Data element is read to its end to find its items).
func readRows(path string, r0, r1 int) (h SliceHeader, raw []byte, read int64, whole []byte) {
	f, err := os.Open(path)
	if err != nil {
		return h, nil, 0, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return h, nil, 0, nil
	}
	h, prefix, read, err := readHeaderBuf(f, fi.Size())
	h.Path = path
	if err != nil || !native16(h, fi.Size()) || r0 < 0 || r1 > h.Rows || r0 >= r1 {
		if int64(len(prefix)) == fi.Size() {
			whole = prefix
		}
		return h, nil, read, whole
	}
	rowBytes := 2 * int64(h.Columns)
	start, end := h.pixelOffset+int64(r0)*rowBytes, h.pixelOffset+int64(r1)*rowBytes
	raw = make([]byte, end-start)
	k := 0
	if start < int64(len(prefix)) {
		k = copy(raw, prefix[start:min(end, int64(len(prefix)))])
	}
	if k < len(raw) {
		// n == len means success, even with io.EOF at the end of the file
		n, _ := f.ReadAt(raw[k:], start+int64(k))
		read += int64(n)
		if n < len(raw)-k {
			return h, nil, read, nil
		}
	}
	return h, raw, read, nil
}

// native16 says whether the header pass located plain 16-bit, one-sample pixel data of
// exactly Rows×Columns×2 bytes inside a file of size bytes, in a transfer syntax that stores
// it as is (multi-frame and encapsulated objects fail the header pass already).
func native16(h SliceHeader, size int64) bool {
	switch h.TransferSyntax {
	case uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian:
	default:
		return false
	}
	return h.BitsAllocated == 16 && h.SamplesPerPixel == 1 && h.pixelOffset > 0 &&
		h.pixelLength == 2*int64(h.Rows)*int64(h.Columns) && h.pixelOffset+h.pixelLength <= size
}

// agrees checks a file against its planned slice.
func agrees(plan, h SliceHeader) error {
	if h.Rows != plan.Rows || h.Columns != plan.Columns {
		return fmt.Errorf("file is %d×%d, series plan says %d×%d: %w", h.Rows, h.Columns, plan.Rows, plan.Columns, ErrGeometry)
	}
	for a := 0; a < 3; a++ {
		if math.Abs(h.IPP[a]-plan.IPP[a]) > posTol {
			return fmt.Errorf("file ImagePositionPatient %v, series plan says %v: %w", h.IPP, plan.IPP, ErrGeometry)
		}
	}
	for c := 0; c < 6; c++ {
		if math.Abs(h.IOP[c]-plan.IOP[c]) > iopTol {
			return fmt.Errorf("file ImageOrientationPatient %v, series plan says %v: %w", h.IOP, plan.IOP, ErrGeometry)
		}
	}
	return nil
}

// decode writes rows [lo1, lo1+dim1) × columns [lo0, lo0+dim0) of one slice into box slice kb;
// raw holds the slice's pixel data from row r0 on.
// HU = stored·slope + intercept in float64, rounded to float32 (ITK's rescale); 16-bit
// stored values are reinterpreted as int16 when PixelRepresentation is 1.
func decode(vol *patch.Volume, kb int, h SliceHeader, raw []byte, r0 int, lo, dim [3]int) {
	slope, icpt := h.Slope, h.Intercept
	for jb := 0; jb < dim[1]; jb++ {
		j := lo[1] + jb - r0
		for ib := 0; ib < dim[0]; ib++ {
			i := lo[0] + ib
			var stored float64
			switch {
			case h.BitsAllocated == 8:
				stored = float64(raw[j*h.Columns+i])
				if h.PixelRepresentation == 1 {
					stored = float64(int8(raw[j*h.Columns+i]))
				}
			default:
				u := binary.LittleEndian.Uint16(raw[2*(j*h.Columns+i):])
				stored = float64(u)
				if h.PixelRepresentation == 1 {
					stored = float64(int16(u))
				}
			}
			vol.Set(ib, jb, kb, float32(float64(stored*slope)+icpt))
		}
	}
}
