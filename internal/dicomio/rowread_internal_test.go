package dicomio

import (
	"bytes"
	"math"
	"os"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/patch"
)

// rowSeries is a synthetic series whose values cover the whole 16-bit range of its encoding.
func rowSeries(rows, cols int) dicomsynth.Series {
	return dicomsynth.Series{
		Rows: rows, Columns: cols, Slices: 3,
		PixelSpacing: [2]float64{0.75, 0.7}, SliceSpacing: 2.5,
		Origin: [3]float64{-30.5, -120.25, -250}, Intercept: -1024,
		HU: func(i, j, k int) float64 { return float64((37*i+101*j+53*k)%4000 - 1024) },
	}
}

// fullBox decodes box rows [lo1, hi1] of slice k of the series the way the whole-file path does.
func fullBox(t *testing.T, ser *Series, lo, hi [3]int) *patch.Volume {
	t.Helper()
	var dim [3]int
	for b := 0; b < 3; b++ {
		dim[b] = hi[b] - lo[b] + 1
	}
	vol := patch.NewVolume(ser.Geometry.Size, lo, dim)
	for k := lo[2]; k <= hi[2]; k++ {
		h, raw, err := ReadSlice(ser.Slices[k].Path)
		if err != nil {
			t.Fatal(err)
		}
		decode(vol, k-lo[2], h, raw, 0, lo, dim)
	}
	return vol
}

func sameBits(t *testing.T, what string, got, want *patch.Volume) {
	t.Helper()
	if got.Dim != want.Dim || len(got.Data) != len(want.Data) {
		t.Fatalf("%s: box %v, want %v", what, got.Dim, want.Dim)
	}
	for i := range want.Data {
		if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("%s: voxel %d = %v, want %v", what, i, got.Data[i], want.Data[i])
		}
	}
}

// TestRowReadEqualsFullRead: reading only the rows of the box gives the same raw bytes and the
// same float32 voxels as reading the file whole, for each encoding, at both ends of the image,
// with the rows inside the header prefix (small files), beyond it, and across it.
func TestRowReadEqualsFullRead(t *testing.T) {
	encodings := map[string]func(*dicomsynth.Series){
		"explicit-unsigned": func(s *dicomsynth.Series) {},
		"implicit":          func(s *dicomsynth.Series) { s.Implicit = true },
		"signed":            func(s *dicomsynth.Series) { s.Signed, s.Intercept = true, 0 },
		"slope-intercept":   func(s *dicomsynth.Series) { s.Slope, s.Intercept = 0.37, -1000.25 },
		"implicit-signed":   func(s *dicomsynth.Series) { s.Implicit, s.Signed, s.Slope, s.Intercept = true, true, 1.5, -3.125 },
	}
	sizes := map[string][2]int{"in-prefix": {20, 24}, "beyond-prefix": {160, 96}}
	for en, mod := range encodings {
		for sn, sz := range sizes {
			t.Run(en+"/"+sn, func(t *testing.T) {
				s := rowSeries(sz[0], sz[1])
				mod(&s)
				dir := t.TempDir()
				if _, err := s.Write(dir); err != nil {
					t.Fatal(err)
				}
				ser, _, err := ReadSeriesDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				R, C := sz[0], sz[1]
				path := ser.Slices[1].Path
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				_, full, err := ReadSlice(path)
				if err != nil {
					t.Fatal(err)
				}
				// row ranges [r0, r1): ends, whole image, single rows, and the rows around the
				// end of the 16 KiB header prefix
				pre := int((headerPrefix - ser.Slices[1].pixelOffset) / int64(2*C))
				ranges := [][2]int{{0, 1}, {R - 1, R}, {0, R}, {1, R - 1}, {R / 2, R/2 + 1}, {0, R / 3}, {2 * R / 3, R}}
				if pre > 0 && pre < R {
					ranges = append(ranges, [2]int{pre - 1, pre + 1}, [2]int{pre, R}, [2]int{0, pre})
				}
				for _, rr := range ranges {
					h, raw, read, _ := readRows(path, rr[0], rr[1])
					if raw == nil {
						t.Fatalf("rows %v: fell back to the whole-file read", rr)
					}
					if want := full[2*rr[0]*C : 2*rr[1]*C]; !bytes.Equal(raw, want) {
						t.Fatalf("rows %v: raw bytes differ from the whole-file read", rr)
					}
					if read > fi.Size() {
						t.Errorf("rows %v: read %d bytes of a %d-byte file", rr, read, fi.Size())
					}
					if fi.Size() > headerPrefix && rr[1]-rr[0] == 1 && read > headerPrefix+int64(2*C) {
						t.Errorf("rows %v: read %d bytes, want at most the prefix and one row (%d)", rr, read, headerPrefix+2*C)
					}
					lo, hi := [3]int{0, rr[0], 1}, [3]int{C - 1, rr[1] - 1, 1}
					dim := [3]int{C, rr[1] - rr[0], 1}
					got := patch.NewVolume(ser.Geometry.Size, lo, dim)
					decode(got, 0, h, raw, rr[0], lo, dim)
					sameBits(t, "decode", got, fullBox(t, ser, lo, hi))
				}
				// rows outside the image are left to the whole-file path
				for _, rr := range [][2]int{{-1, 2}, {0, R + 1}, {3, 3}} {
					if _, raw, _, _ := readRows(path, rr[0], rr[1]); raw != nil {
						t.Errorf("rows %v: read, want a fallback", rr)
					}
				}
				// LoadBox over sub-boxes touching each edge equals the whole-file decode
				for _, box := range [][2][3]int{
					{{0, 0, 0}, {C - 1, R - 1, 2}},
					{{0, 0, 0}, {C / 2, 0, 0}},
					{{C / 3, R - 1, 1}, {C - 1, R - 1, 2}},
					{{1, R / 4, 0}, {C - 2, 3 * R / 4, 2}},
				} {
					vol, st, err := ser.LoadBox(box[0], box[1])
					if err != nil {
						t.Fatal(err)
					}
					sameBits(t, "LoadBox", vol, fullBox(t, ser, box[0], box[1]))
					if st.Bytes > int64(st.Files)*fi.Size() {
						t.Errorf("box %v: read %d bytes from %d files of %d", box, st.Bytes, st.Files, fi.Size())
					}
				}
			})
		}
	}
}

// TestRowReadFallsBack: pixel data longer than Rows×Columns×2 is not read by rows; LoadBox
// then reads the file whole and decodes the first Rows×Columns samples, as before.
func TestRowReadFallsBack(t *testing.T) {
	s := rowSeries(160, 96)
	s.Edit = func(k int, elems []*dicom.Element) []*dicom.Element {
		for i, e := range elems {
			if e.Tag == tag.Rows {
				ne, err := dicom.NewElement(tag.Rows, []int{150})
				if err != nil {
					panic(err)
				}
				elems[i] = ne
			}
		}
		return elems
	}
	dir := t.TempDir()
	if _, err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	ser, _, err := ReadSeriesDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := ser.Slices[0].Path
	if _, raw, read, _ := readRows(path, 0, 10); raw != nil || read == 0 {
		t.Fatalf("rows of odd-length pixel data: %d bytes of rows after %d bytes, want a fallback after the header", len(raw), read)
	}
	lo, hi := [3]int{2, 140, 0}, [3]int{90, 149, 2}
	vol, st, err := ser.LoadBox(lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "fallback", vol, fullBox(t, ser, lo, hi))
	fi, _ := os.Stat(path)
	if st.Bytes < 3*fi.Size() {
		t.Errorf("fallback read %d bytes, want at least the 3 whole files (%d)", st.Bytes, 3*fi.Size())
	}
}
