package dicomio

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/suyashkumar/dicom"

	"connectome/internal/dicomio/dicomsynth"
)

// synthSlice writes one rows×columns slice with dicomsynth and returns its path and bytes.
func synthSlice(tb testing.TB, rows, cols int, implicit bool) (string, []byte) {
	tb.Helper()
	dir := tb.TempDir()
	s := dicomsynth.Series{Rows: rows, Columns: cols, Slices: 1, PixelSpacing: [2]float64{0.7, 0.7}, SliceSpacing: 1,
		Implicit: implicit, Intercept: -1024, HU: func(i, j, k int) float64 { return float64((i*j)%2000 - 1000) }}
	paths, err := s.Write(dir)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		tb.Fatal(err)
	}
	return paths[0], b
}

// FuzzGuardPrefix: the guard on a prefix either asks for more bytes or gives the answer it
// gives on the whole file.
func FuzzGuardPrefix(f *testing.F) {
	for _, implicit := range []bool{false, true} {
		_, b := synthSlice(f, 4, 4, implicit)
		f.Add(b, uint16(200))
		f.Add(b, uint16(len(b)-20))
		f.Add(b[:len(b)-9], uint16(300))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		size := int64(len(b))
		complete, errFull := checkPrefix(b, size)
		if !complete {
			t.Fatalf("guard wants more than the whole file (%v)", errFull)
		}
		k := int(cut) % (len(b) + 1)
		if complete, err := checkPrefix(b[:k], size); complete && fmt.Sprint(err) != fmt.Sprint(errFull) {
			t.Fatalf("on %d of %d bytes the guard says %v, on all of them %v", k, len(b), err, errFull)
		}
	})
}

// BenchmarkGuard compares the guard with the parse it protects, on a 512×512 CT slice
// (dicomsynth: 45 elements, 524288 bytes of pixel data).
func BenchmarkGuard(b *testing.B) {
	path, data := synthSlice(b, 512, 512, false)
	size := int64(len(data))
	prefix := data[:headerPrefix]
	b.Run("guard-prefix", func(b *testing.B) {
		// the header pass: the guard on the 16 KiB first read
		for b.Loop() {
			if ok, err := checkPrefix(prefix, size); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("library-parse", func(b *testing.B) {
		// the library alone, as the reader calls it (skipping pixel data), without the guard
		for b.Loop() {
			if _, err := dicom.Parse(bytes.NewReader(data), size, nil, dicom.SkipPixelData()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse-header", func(b *testing.B) {
		// guard + library on the first read: what ReadHeader costs after its read
		for b.Loop() {
			if _, ok, err := parseHeaderPrefix(prefix, size); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ReadHeader", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := ReadHeader(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadSlice", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := ReadSlice(filepath.Clean(path)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
