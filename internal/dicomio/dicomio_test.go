package dicomio_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/models"
)

func phantom(i, j, k int) float64 { return float64((37*i+101*j+53*k)%2000 - 1000) }

func baseSeries() dicomsynth.Series {
	return dicomsynth.Series{
		Rows: 20, Columns: 24, Slices: 9,
		PixelSpacing: [2]float64{0.75, 0.7}, SliceSpacing: 2.5,
		Origin: [3]float64{-30.5, -120.25, -250}, Intercept: -1024, HU: phantom,
	}
}

func TestRoundTrip(t *testing.T) {
	cases := map[string]func(*dicomsynth.Series){
		"explicit-unsigned": func(s *dicomsynth.Series) {},
		"implicit":          func(s *dicomsynth.Series) { s.Implicit = true },
		"signed":            func(s *dicomsynth.Series) { s.Signed, s.Intercept = true, 0 },
		"slope":             func(s *dicomsynth.Series) { s.Slope, s.Intercept = 0.5, -1000 },
		"descending":        func(s *dicomsynth.Series) { s.Descending = true },
		"shuffled":          func(s *dicomsynth.Series) { s.Shuffle = 3; s.Descending = true },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			s := baseSeries()
			mod(&s)
			dir := t.TempDir()
			if _, err := s.Write(dir); err != nil {
				t.Fatal(err)
			}
			ser, read, err := dicomio.ReadSeriesDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				fi, _ := e.Info()
				total += fi.Size()
			}
			// a header pass reads each file's prefix only when files are larger than it
			if read > total {
				t.Errorf("header pass read %d bytes of %d", read, total)
			}
			g := ser.Geometry
			if g.Size != [3]int{24, 20, 9} || g.Spacing != [3]float64{float64(float32(0.7)), 0.75, 2.5} || g.Origin != [3]float64{-30.5, -120.25, -250} {
				t.Fatalf("geometry %+v", g)
			}
			vol, st, err := ser.LoadBox([3]int{0, 0, 0}, [3]int{23, 19, 8})
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 9 {
				t.Errorf("read %d files, want 9", st.Files)
			}
			for k := 0; k < 9; k++ {
				for j := 0; j < 20; j++ {
					for i := 0; i < 24; i++ {
						if got, want := vol.At(i, j, k), float32(phantom(i, j, k)); got != want {
							t.Fatalf("voxel %d,%d,%d = %v, want %v", i, j, k, got, want)
						}
					}
				}
			}
			// a sub-box reads only its slices
			sub, st, err := ser.LoadBox([3]int{3, 4, 2}, [3]int{10, 12, 4})
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 3 || sub.At(0, 0, 0) != float32(phantom(3, 4, 2)) || sub.At(7, 8, 2) != float32(phantom(10, 12, 4)) {
				t.Errorf("sub-box: %d files, corners %v %v", st.Files, sub.At(0, 0, 0), sub.At(7, 8, 2))
			}
		})
	}
}

// TestHeaderPassReadsLittle checks that the header pass does not read pixel data.
func TestHeaderPassReadsLittle(t *testing.T) {
	s := baseSeries()
	s.Rows, s.Columns, s.Slices = 256, 256, 3
	dir := t.TempDir()
	paths, err := s.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, read, err := dicomio.ReadHeader(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(paths[0])
	if read > 32<<10 || read >= fi.Size() {
		t.Errorf("header pass read %d of %d bytes", read, fi.Size())
	}
	if h.Rows != 256 || h.IPP != [3]float64{-30.5, -120.25, -250} {
		t.Errorf("header %+v", h)
	}
}

func writeErr(t *testing.T, s dicomsynth.Series) (*dicomio.Series, error) {
	t.Helper()
	dir := t.TempDir()
	if _, err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	ser, _, err := dicomio.ReadSeriesDir(dir)
	if err != nil {
		return nil, err
	}
	_, _, err = ser.LoadBox([3]int{0, 0, 0}, [3]int{100, 100, 100})
	return ser, err
}

func setString(elems []*dicom.Element, tg tag.Tag, v ...string) []*dicom.Element {
	for i, e := range elems {
		if e.Tag == tg {
			ne, err := dicom.NewElement(tg, v)
			if err != nil {
				panic(err)
			}
			elems[i] = ne
			return elems
		}
	}
	ne, err := dicom.NewElement(tg, v)
	if err != nil {
		panic(err)
	}
	return append(elems, ne)
}

func TestSeriesErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*dicomsynth.Series)
		is   error
		msg  string
	}{
		{"mixed orientations", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				if k == 4 {
					return setString(e, tag.ImageOrientationPatient, "1", "0", "0", "0", "0.9", "0.43589")
				}
				return e
			}
		}, dicomio.ErrGeometry, "mixed orientations"},
		{"compressed in a syntax not decoded", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.TransferSyntaxUID, "1.2.840.10008.1.2.4.92")
			}
		}, dicomio.ErrUnsupported, "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) (1.2.840.10008.1.2.4.92) is not supported"},
		// The two compressed syntaxes NLST's CT holds in IDC (docs/idc-index.md) are decoded
		// (jpegdct.go, jpegll.go) and must be encapsulated.
		{"JPEG extended label on native pixels", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.TransferSyntaxUID, "1.2.840.10008.1.2.4.51")
			}
		}, dicomio.ErrCorrupt, "1.2.840.10008.1.2.4.51 with native (not encapsulated) pixel data"},
		{"JPEG lossless label on native pixels", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.TransferSyntaxUID, "1.2.840.10008.1.2.4.70")
			}
		}, dicomio.ErrCorrupt, "1.2.840.10008.1.2.4.70 with native (not encapsulated) pixel data"},
		{"big endian", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.TransferSyntaxUID, "1.2.840.10008.1.2.2")
			}
		}, dicomio.ErrUnsupported, "Big Endian"},
		{"multi-frame", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.NumberOfFrames, "2")
			}
		}, dicomio.ErrUnsupported, "multi-frame object (2 frames)"},
		{"no pixel data", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				out := e[:0]
				for _, x := range e {
					if x.Tag != tag.PixelData {
						out = append(out, x)
					}
				}
				return out
			}
		}, dicomio.ErrNoPixelData, "no pixel data"},
		{"two series", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				if k == 2 {
					return setString(e, tag.SeriesInstanceUID, "2.25.999")
				}
				return e
			}
		}, dicomio.ErrGeometry, "slices of two series"},
		{"two series with other spacings", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				if k >= 2 {
					return setString(setString(e, tag.SeriesInstanceUID, "2.25.999"), tag.PixelSpacing, "0.5", "0.5")
				}
				return e
			}
		}, dicomio.ErrGeometry, "slices of two series"},
		{"MR", func(s *dicomsynth.Series) {
			s.Edit = func(k int, e []*dicom.Element) []*dicom.Element {
				return setString(e, tag.Modality, "MR")
			}
		}, dicomio.ErrNotCT, "Modality MR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSeries()
			c.mod(&s)
			_, err := writeErr(t, s)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q, want %v containing %q", err, c.is, c.msg)
			}
		})
	}
}

func TestWindowChecks(t *testing.T) {
	pos := func(z ...float64) func(k int) [3]float64 {
		return func(k int) [3]float64 { return [3]float64{-30.5, -120.25, z[k]} }
	}
	cases := []struct {
		name   string
		z      []float64
		lo, hi int
		msg    string
	}{
		{"uniform", []float64{0, 2.5, 5, 7.5, 10, 12.5}, 1, 4, ""},
		{"duplicate in window", []float64{0, 2.5, 5, 5, 7.5, 10}, 1, 3, "duplicate slice position"},
		{"gap in window", []float64{0, 2.5, 5, 10, 12.5, 15}, 1, 3, "non-uniform slice positions"},
		{"gap outside window", []float64{0, 2.5, 5, 7.5, 10, 12.5, 15, 20}, 0, 4, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSeries()
			s.Slices = len(c.z)
			s.Position = pos(c.z...)
			dir := t.TempDir()
			if _, err := s.Write(dir); err != nil {
				t.Fatal(err)
			}
			ser, _, err := dicomio.ReadSeriesDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = ser.CheckWindow(c.lo, c.hi)
			if c.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, dicomio.ErrGeometry) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %v, want %q", err, c.msg)
			}
		})
	}
}

func TestFileAgreesWithPlan(t *testing.T) {
	s := baseSeries()
	dir := t.TempDir()
	if _, err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	ser, _, err := dicomio.ReadSeriesDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ser.Slices[3].IPP[2] += 1 // the table says something else than the file
	_, _, err = ser.LoadBox([3]int{0, 0, 3}, [3]int{5, 5, 3})
	if err == nil || !strings.Contains(err.Error(), "ImagePositionPatient") {
		t.Errorf("error %v, want a position mismatch", err)
	}
}

// TestFromInstancesAndPlan: the geometry fetch plans from (the instances table) is the one
// the files give, and the plan's input box names the slices a crop reads.
func TestFromInstancesAndPlan(t *testing.T) {
	s := baseSeries()
	s.Slices, s.Descending, s.Shuffle = 40, true, 9
	dir := t.TempDir()
	if _, err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	ser, _, err := dicomio.ReadSeriesDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var rows []tables.Instance
	for _, h := range ser.Slices {
		rows = append(rows, tables.Instance{SeriesInstanceUID: h.SeriesInstanceUID, SOPInstanceUID: h.SOPInstanceUID,
			LocalPath: h.Path, ImagePositionPatient: h.IPP, ImageOrientationPatient: h.IOP,
			PixelSpacing: h.PixelSpacing, Rows: int32(h.Rows), Columns: int32(h.Columns)})
	}
	rows[0], rows[len(rows)-1] = rows[len(rows)-1], rows[0] // table order does not matter
	fromTable, err := dicomio.FromInstances(rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fromTable.Geometry != ser.Geometry {
		t.Fatalf("table geometry %+v, files %+v", fromTable.Geometry, ser.Geometry)
	}
	prep := models.Preprocess{Axcodes: "RAS", Pixdim: [3]float64{1, 1, 1}, ROI: [3]int{48, 48, 48},
		HURange: [2]float64{-1024, 2048}, Clamp: [2]float64{0, 1}}
	seed := [3]float64{-30.5 + 12*0.7, -120.25 + 10*0.75, -250 + 20*2.5}
	pl, err := patch.NewPlan(fromTable.Geometry, seed, prep)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := pl.InLo[2], pl.InHi[2]
	// 48 mm at 2.5 mm: about 20 slices, well inside the 40
	if lo <= 0 || hi >= 39 || hi-lo < 18 || hi-lo > 22 {
		t.Errorf("needed slices %d..%d", lo, hi)
	}
	res, err := dicomio.Extract(fromTable, seed, []models.Preprocess{prep})
	if err != nil {
		t.Fatal(err)
	}
	if res.Load.Files != hi-lo+1 {
		t.Errorf("read %d files, the plan says %d..%d", res.Load.Files, lo, hi)
	}
	if _, err := patch.NewPlan(fromTable.Geometry, [3]float64{0, 0, 900}, prep); !errors.Is(err, patch.ErrSeedOutside) {
		t.Errorf("seed far outside: %v", err)
	}
	// a table without geometry is refused with a geometry error
	rows[3].Rows = 0
	if _, err := dicomio.FromInstances(rows, nil); !errors.Is(err, dicomio.ErrGeometry) {
		t.Errorf("table without geometry: %v", err)
	}
}
