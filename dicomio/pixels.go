package dicomio

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"connectome/patch"
)

// posTol is how far a file's ImagePositionPatient may be from the planned slice position
// (the instances table and the file carry the same decimal string; this allows for rounding).
const posTol = 1e-3

// LoadStats counts the I/O of one LoadBox.
type LoadStats struct {
	Files int
	Bytes int64
}

// ReadSlice reads one file whole and parses its header; the pixel data stays raw.
func ReadSlice(path string) (SliceHeader, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SliceHeader{}, nil, err
	}
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
		h, raw, err := ReadSlice(plan.Path)
		st.Files++
		if fi, e := os.Stat(plan.Path); e == nil {
			st.Bytes += fi.Size()
		}
		if err != nil {
			return nil, st, err
		}
		if err := agrees(plan, h); err != nil {
			return nil, st, fmt.Errorf("slice %s: %w", plan.Path, err)
		}
		decode(vol, k-lo[2], h, raw, lo, dim)
	}
	return vol, st, nil
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

// decode writes rows [lo1, lo1+dim1) × columns [lo0, lo0+dim0) of one slice into box slice kb.
// HU = stored·slope + intercept in float64, rounded to float32 (ITK's rescale); 16-bit
// stored values are reinterpreted as int16 when PixelRepresentation is 1.
func decode(vol *patch.Volume, kb int, h SliceHeader, raw []byte, lo, dim [3]int) {
	slope, icpt := h.Slope, h.Intercept
	for jb := 0; jb < dim[1]; jb++ {
		j := lo[1] + jb
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
