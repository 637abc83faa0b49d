package dicomio_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
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
	// hand-made files: nested sequences, encapsulated pixel data, and lengths that cost the
	// unguarded library a 4 GiB allocation each
	for _, s := range []sliceSpec{
		{seq: refSeq(nil)},
		{implicit: true, seq: refSeq(refSeq(nil))},
		{pixel: func(d *dcmWriter) {
			d.hdr(0x7FE0, 0x0010, "OB", undefined).item(0).item(2)
			d.b.WriteString("JP")
			d.seqEnd()
		}},
		{implicit: true, name: func(d *dcmWriter) { d.hdr(0x0010, 0x0010, "PN", 0xFFFFFFF0) }},
		{name: func(d *dcmWriter) { d.hdr(0x0010, 0x0030, "DA", 0xFFFF) }},
		{seq: refSeq(func(d *dcmWriter) { d.hdr(0x0008, 0x1155, "UN", 0xFFFFFFF0) })},
	} {
		_, b := s.build()
		f.Add(b)
	}
	heap := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		// the guard alone, without the recover that the header pass has
		checkErr := dicomio.Check(b)
		metrics.Read(heap)
		before := heap[0].Value.Uint64()
		h, err := dicomio.ParseHeader(b)
		metrics.Read(heap)
		// the parse allocates in proportion to the input, never what a length field claims
		if alloc := heap[0].Value.Uint64() - before; alloc > 64<<20+uint64(256*len(b)) {
			t.Fatalf("parsing %d bytes allocated %d bytes", len(b), alloc)
		}
		if errors.Is(checkErr, dicomio.ErrCorrupt) && err == nil {
			t.Fatalf("guard says %v, header pass accepts", checkErr)
		}
		if err != nil {
			return
		}
		if checkErr != nil {
			t.Fatalf("header pass accepts, guard says %v", checkErr)
		}
		if h.Rows <= 0 || h.Columns <= 0 || h.SamplesPerPixel != 1 {
			t.Fatalf("accepted a header with rows %d, columns %d, samples %d", h.Rows, h.Columns, h.SamplesPerPixel)
		}
	})
}
