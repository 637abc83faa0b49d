package dicomio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

// debianPydicomFiles: the test files of Debian's python3-pydicom (see guard_test.go).
const debianPydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

func requirePydicomFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(debianPydicomFiles, name)
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "%v: install python3-pydicom (make deps)", err)
	}
	return p
}

// codecPython is the Python of the reference environment: pydicom 3 with the decoding
// plugins it uses for JPEG, JPEG-LS and JPEG 2000.
func codecPython(t *testing.T) string { return testenv.ReferencePython(t) }

// readCompressed reads a slice through ReadSlice, as preprocess does, and fails t unless it
// is encapsulated pixel data in transfer syntax ts.
func readCompressed(t *testing.T, path, ts string) (SliceHeader, []byte) {
	t.Helper()
	h, got, err := ReadSlice(path)
	if err != nil {
		t.Fatalf("read the compressed slice %s: %v", filepath.Base(path), err)
	}
	if h.TransferSyntax != ts || !h.encapsulated {
		t.Fatalf("transfer syntax %s (encapsulated %v), want %s", h.TransferSyntax, h.encapsulated, ts)
	}
	return h, got
}

// sampleDiff counts the samples (little-endian, bits 8 or 16, read as two's complement where
// signed) in which got and want differ, over the samples both have, and the largest
// difference: what a failing comparison reports, and the bound a lossy test checks.
func sampleDiff(got, want []byte, bits int, signed bool) (differ, maxDiff int) {
	size := bits / 8
	for i := 0; i+size <= min(len(got), len(want)); i += size {
		var a, b int
		switch {
		case size == 1 && signed:
			a, b = int(int8(got[i])), int(int8(want[i]))
		case size == 1:
			a, b = int(got[i]), int(want[i])
		case signed:
			a, b = int(int16(binary.LittleEndian.Uint16(got[i:]))), int(int16(binary.LittleEndian.Uint16(want[i:])))
		default:
			a, b = int(binary.LittleEndian.Uint16(got[i:])), int(binary.LittleEndian.Uint16(want[i:]))
		}
		if a != b {
			differ++
			maxDiff = max(maxDiff, a-b, b-a)
		}
	}
	return differ, maxDiff
}

// runPython runs script with args under python and fails t, printing its output, if it fails.
func runPython(t *testing.T, python, script string, args ...string) {
	t.Helper()
	if out, err := exec.Command(python, append([]string{"-c", script}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", python, err, out)
	}
}

// A real CT slice (pydicom's CT_small.dcm, 128², signed 16-bit) compressed to RLE Lossless by
// pydicom's own encoder at test time reads back bit for bit as the uncompressed file, through
// the same ReadSlice that preprocess uses; pydicom checks its own round trip first.
func TestRLESliceEqualsUncompressed(t *testing.T) {
	src := requirePydicomFile(t, "CT_small.dcm")
	rle := filepath.Join(t.TempDir(), "ct_rle.dcm")
	script := `
import sys, pydicom
from pydicom.uid import RLELossless
ds = pydicom.dcmread(sys.argv[1])
want = ds.pixel_array
ds.compress(RLELossless)
ds.save_as(sys.argv[2])
back = pydicom.dcmread(sys.argv[2])
assert back.file_meta.TransferSyntaxUID == RLELossless
assert (back.pixel_array == want).all(), "pydicom's own RLE round trip differs"
`
	if out, err := exec.Command("/usr/bin/python3", "-c", script, src, rle).CombinedOutput(); err != nil {
		t.Fatalf("pydicom RLE encoding: %v\n%s", err, out)
	}
	hw, want, err := ReadSlice(src)
	if err != nil {
		t.Fatal(err)
	}
	h, got := readCompressed(t, rle, rleLossless)
	if h.PixelRepresentation != hw.PixelRepresentation || h.BitsAllocated != hw.BitsAllocated {
		t.Errorf("pixel encoding %+v, want %+v", h, hw)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("RLE slice decodes to %d bytes that differ from the uncompressed file's %d", len(got), len(want))
	}
	// The header pass that plans a series (no pixel data read) sees the same slice.
	hh, _, err := ReadHeader(rle)
	if err != nil || hh.IPP != hw.IPP || hh.Rows != hw.Rows || hh.SOPInstanceUID != hw.SOPInstanceUID {
		t.Errorf("ReadHeader of the RLE slice: %+v, %v", hh, err)
	}
}

// pydicom's own pair of one MR image, uncompressed and RLE (written by another toolkit):
// the decoder alone, on the frame as stored, gives the uncompressed pixel data.
func TestRLEDecoderOnPydicomPair(t *testing.T) {
	native := pixelValue(t, requirePydicomFile(t, "MR_small.dcm"), false)
	frame, err := encapsulatedFrame(pixelValue(t, requirePydicomFile(t, "MR_small_RLE.dcm"), true))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRLE(frame, 64, 64, 16)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, native[:64*64*2]) {
		t.Fatal("MR_small_RLE decodes to other bytes than MR_small's pixel data")
	}
}

// pixelValue returns the value of the file's top-level Pixel Data element: the bytes after
// its explicit-VR OB/OW header, to the end of the file when encapsulated.
func pixelValue(t *testing.T, path string, encapsulated bool) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, vr := range []string{"OB", "OW"} {
		i := bytes.LastIndex(b, append([]byte{0xE0, 0x7F, 0x10, 0x00}, vr...))
		if i < 0 {
			continue
		}
		n := binary.LittleEndian.Uint32(b[i+8:])
		if encapsulated != (n == 0xFFFFFFFF) {
			t.Fatalf("%s: pixel data length %#x", path, n)
		}
		if encapsulated {
			return b[i+12:]
		}
		return b[i+12 : i+12+int(n)]
	}
	t.Fatalf("%s: no explicit-VR pixel data element", path)
	return nil
}

// rleFrame builds a fragment from segments.
func rleFrame(segs ...[]byte) []byte {
	hdr := make([]byte, rleHeaderLen)
	binary.LittleEndian.PutUint32(hdr, uint32(len(segs)))
	off := rleHeaderLen
	var body []byte
	for i, s := range segs {
		binary.LittleEndian.PutUint32(hdr[4+4*i:], uint32(off))
		off += len(s)
		body = append(body, s...)
	}
	return append(hdr, body...)
}

// checkDecoded fails t unless err wraps wantErr, or (wantErr nil) got is want.
func checkDecoded(t *testing.T, got []byte, err error, want []byte, wantErr error) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

func TestRLEDecodeCases(t *testing.T) {
	for _, c := range []struct {
		name       string
		frame      []byte
		rows, cols int
		bits       int
		want       []byte
		err        error
	}{
		// literal 3, then 0xAA repeated 3 times (header -2), then a no-op (-128), pad byte
		{"8-bit literal and replicate", rleFrame([]byte{2, 1, 2, 3, 0xFE, 0xAA, 0x80, 0}), 2, 3, 8, []byte{1, 2, 3, 0xAA, 0xAA, 0xAA}, nil},
		// high plane first: samples 0x0102 and 0xFF03 (little-endian 02 01, 03 FF)
		{"16-bit planes", rleFrame([]byte{1, 0x01, 0xFF}, []byte{1, 0x02, 0x03}), 1, 2, 16, []byte{0x02, 0x01, 0x03, 0xFF}, nil},
		{"too short", rleFrame([]byte{0, 7}), 1, 2, 8, nil, ErrCorrupt},
		{"literal past the end", rleFrame([]byte{5, 1}), 1, 2, 8, nil, ErrCorrupt},
		{"wrong segment count", rleFrame([]byte{1, 1, 2}), 1, 2, 16, nil, ErrCorrupt},
		{"no header", []byte{1, 0, 0, 0}, 1, 1, 8, nil, ErrCorrupt},
		{"12 bits allocated", rleFrame([]byte{0, 1}), 1, 1, 12, nil, ErrUnsupported},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeRLE(c.frame, c.rows, c.cols, c.bits)
			checkDecoded(t, got, err, c.want, c.err)
		})
	}
}

func TestEncapsulatedFrame(t *testing.T) {
	item := func(b []byte) []byte {
		h := make([]byte, 8)
		binary.LittleEndian.PutUint32(h, itemTag)
		binary.LittleEndian.PutUint32(h[4:], uint32(len(b)))
		return append(h, b...)
	}
	delim := []byte{0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name  string
		value []byte
		want  []byte
		err   error
	}{
		{"empty offset table, two fragments", cat(item(nil), item([]byte{1, 2}), item([]byte{3}), delim), []byte{1, 2, 3}, nil},
		{"one-entry offset table", cat(item([]byte{0, 0, 0, 0}), item([]byte{9}), delim), []byte{9}, nil},
		{"two frames", cat(item(make([]byte, 8)), item([]byte{9}), delim), nil, ErrUnsupported},
		{"no fragment", cat(item(nil), delim), nil, ErrNoPixelData},
		{"item past the end", cat(item(nil), item([]byte{1, 2})[:9]), nil, ErrCorrupt},
		{"not an item", cat(item(nil), []byte{1, 2, 3, 4, 0, 0, 0, 0}), nil, ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := encapsulatedFrame(c.value)
			checkDecoded(t, got, err, c.want, c.err)
		})
	}
}

// FuzzDecodeJPEGLossless: no input makes the decoder panic or return a wrong-sized image.
func FuzzDecodeJPEGLossless(f *testing.F) {
	// SOI, a one-code table (category 0), SOF3 2×2 at 8 bits, SOS (sv 1), zero bits, EOI
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xC4, 0, 20, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xFF, 0xC3, 0, 11, 8, 0, 2, 0, 2, 1, 1, 0x11, 0, 0xFF, 0xDA, 0, 8, 1, 1, 0, 1, 0, 0, 0x00, 0xFF, 0xD9}, 2, 2, false)
	f.Fuzz(func(t *testing.T, data []byte, rows, cols int, signed bool) {
		if rows < 0 || cols < 0 || rows*cols > 1<<16 {
			return
		}
		out, err := decodeJPEGLossless(data, rows, cols, 16, signed)
		checkFuzzDecode(t, out, err, rows*cols*2)
	})
}

// checkFuzzDecode is what every decoder's fuzz target asserts: the decode gave exactly want
// bytes, or an error classed as corrupt or unsupported (never a panic, which fails by itself).
func checkFuzzDecode(t *testing.T, out []byte, err error, want int) {
	t.Helper()
	if err == nil && len(out) != want {
		t.Fatalf("%d bytes, want %d", len(out), want)
	}
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unclassified error %v", err)
	}
}

// FuzzDecodeRLE: no input makes the decoder panic or return a wrong-sized image.
func FuzzDecodeRLE(f *testing.F) {
	f.Add(rleFrame([]byte{2, 1, 2, 3, 0xFE, 0xAA}), 2, 3, false)
	f.Add(rleFrame([]byte{1, 0x01, 0xFF}, []byte{1, 0x02, 0x03}), 1, 2, true)
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols int, wide bool) {
		if rows < 0 || cols < 0 || rows*cols > 1<<16 {
			return
		}
		bits := 8
		if wide {
			bits = 16
		}
		out, err := decodeRLE(frame, rows, cols, bits)
		checkFuzzDecode(t, out, err, rows*cols*bits/8)
		if _, err := encapsulatedFrame(frame); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrNoPixelData) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// A real CT slice compressed to JPEG Lossless by DCMTK's dcmcjpeg (Debian package dcmtk,
// installed by make deps) at test time, with every selection value and with a point
// transform, reads back bit for bit as the uncompressed file (shifted by the point transform,
// whose low bits the encoder drops).
func TestJPEGLosslessSliceEqualsUncompressed(t *testing.T) {
	src := requirePydicomFile(t, "CT_small.dcm")
	enc, err := exec.LookPath("dcmcjpeg")
	if err != nil {
		testenv.Missing(t, "dcmcjpeg missing (dcmtk)")
	}
	_, want, err := ReadSlice(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		ts   string
		pt   uint
	}{
		{[]string{"+e1"}, jpegLosslessSV1, 0},
		{[]string{"+el", "+sv", "2"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "3"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "4"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "5"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "6"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "7"}, jpegLossless, 0},
		{[]string{"+el", "+sv", "1", "+pt", "2"}, jpegLossless, 2},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ct.dcm")
			if b, err := exec.Command(enc, append(c.args, src, out)...).CombinedOutput(); err != nil {
				t.Fatalf("dcmcjpeg: %v\n%s", err, b)
			}
			_, got := readCompressed(t, out, c.ts)
			exp := want
			if c.pt > 0 {
				exp = bytes.Clone(want)
				for i := 0; i < len(exp); i += 2 {
					v := binary.LittleEndian.Uint16(exp[i:]) >> c.pt << c.pt
					binary.LittleEndian.PutUint16(exp[i:], v)
				}
			}
			if !bytes.Equal(got, exp) {
				diff := 0
				for i := range got {
					if i < len(exp) && got[i] != exp[i] {
						diff++
					}
				}
				t.Fatalf("decoded %d bytes, %d differ from the uncompressed file's %d", len(got), diff, len(exp))
			}
		})
	}
}

// A whole series compressed losslessly, slice by slice, in each lossless syntax gives LoadBox
// the same voxels as the uncompressed series (signed and unsigned): what preprocess reads does
// not depend on how the slices are stored.
func TestLosslessSeriesLoadBoxEqualsNative(t *testing.T) {
	py := codecPython(t)
	for _, signed := range []bool{false, true} {
		s := rowSeries(96, 80)
		if signed {
			s.Signed, s.Intercept = true, 0 // stored values down to -1024
		}
		native := filepath.Join(t.TempDir(), "native")
		files, err := s.Write(native)
		if err != nil {
			t.Fatal(err)
		}
		natSer, _, err := ReadSeriesDir(native)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := [3]int{5, 7, 0}, [3]int{70, 90, 2}
		want, _, err := natSer.LoadBox(lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, encoder, syntax string
		}{
			{"RLE Lossless", "RLELossless", rleLossless},
			{"JPEG Lossless SV1", "dcmcjpeg", jpegLosslessSV1},
			{"JPEG-LS Lossless", "JPEGLSLossless", jpegLSLossless},
			{"JPEG 2000 Lossless", "JPEG2000Lossless", jpeg2000Lossless},
		} {
			t.Run(fmt.Sprintf("%s signed=%v", c.name, signed), func(t *testing.T) {
				dir := t.TempDir()
				if c.encoder == "dcmcjpeg" {
					for _, f := range files {
						if out, err := exec.Command("dcmcjpeg", "+e1", f, filepath.Join(dir, filepath.Base(f))).CombinedOutput(); err != nil {
							t.Fatalf("dcmcjpeg: %v\n%s", err, out)
						}
					}
				} else {
					runPython(t, py, `
import sys, os, pydicom
from pydicom import uid
for src in sys.argv[3:]:
    ds = pydicom.dcmread(src)
    ds.compress(getattr(uid, sys.argv[1]))
    ds.save_as(os.path.join(sys.argv[2], os.path.basename(src)))
`, append([]string{c.encoder, dir}, files...)...)
				}
				h, _, err := ReadHeader(filepath.Join(dir, filepath.Base(files[0])))
				if err != nil || h.TransferSyntax != c.syntax {
					t.Fatalf("header %v, transfer syntax %s, want %s", err, h.TransferSyntax, c.syntax)
				}
				ser, _, err := ReadSeriesDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := ser.LoadBox(lo, hi)
				if err != nil {
					t.Fatal(err)
				}
				sameBits(t, c.name, got, want)
			})
		}
	}
}
