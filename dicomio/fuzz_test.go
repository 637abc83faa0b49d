package dicomio_test

import (
	"os"
	"path/filepath"
	"testing"

	"connectome/dicomio"
	"connectome/dicomio/dicomsynth"
)

// FuzzParseHeader feeds arbitrary bytes to the header pass: it must return an error or a
// header, never panic or hang, and a header it accepts must be usable.
func FuzzParseHeader(f *testing.F) {
	for _, implicit := range []bool{false, true} {
		dir := f.TempDir()
		s := dicomsynth.Series{Rows: 4, Columns: 4, Slices: 1, PixelSpacing: [2]float64{0.7, 0.7}, SliceSpacing: 1,
			Implicit: implicit, HU: func(i, j, k int) float64 { return float64(i * j) }}
		if _, err := s.Write(dir); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "IM00001.dcm"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:200])
	}
	f.Add([]byte("DICM"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := dicomio.ParseHeader(b)
		if err != nil {
			return
		}
		if h.Rows <= 0 || h.Columns <= 0 || h.SamplesPerPixel != 1 {
			t.Fatalf("accepted a header with rows %d, columns %d, samples %d", h.Rows, h.Columns, h.SamplesPerPixel)
		}
	})
}
