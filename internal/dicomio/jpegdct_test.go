package dicomio

import (
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

// makeCTVariants writes, from pydicom's CT_small.dcm, the uncompressed slices the lossy tests
// compress: ct12.dcm (unsigned 12-bit stored, as NLST's CT), ct12odd.dcm (the same cropped to
// 93×127, so that blocks overhang both edges) and ct8.dcm (8 bits allocated).
func makeCTVariants(t *testing.T, py, dir string) {
	t.Helper()
	runPython(t, py, `
import sys, numpy as np, pydicom
ds = pydicom.dcmread(sys.argv[1])
a = ds.pixel_array.astype(np.int32)
u12 = np.clip(a - a.min(), 0, 4095).astype(np.uint16)
def save(name, arr, bits):
    d = pydicom.dcmread(sys.argv[1])
    d.Rows, d.Columns = arr.shape
    d.PixelRepresentation = 0
    d.BitsAllocated, d.BitsStored, d.HighBit = (8 if bits == 8 else 16), bits, bits - 1
    d.PixelData = arr.tobytes()
    d.RescaleIntercept = -1024
    d.save_as(sys.argv[2] + "/" + name)
save("ct12.dcm", u12, 12)
save("ct12odd.dcm", np.ascontiguousarray(u12[:93, :127]), 12)
save("ct8.dcm", (u12 >> 4).astype(np.uint8), 8)
`, requirePydicomFile(t, "CT_small.dcm"), dir)
}

// pydicomPixels decodes path with pydicom and the named decoding plugin ("" for pydicom's
// own choice), returning the samples as little-endian bytes of the file's bits allocated.
func pydicomPixels(t *testing.T, py, path, plugin string) []byte {
	t.Helper()
	out := path + ".pydicom.raw"
	runPython(t, py, `
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
if sys.argv[3]:
    ds.pixel_array_options(decoding_plugin=sys.argv[3])
a = ds.pixel_array
open(sys.argv[2], "wb").write(a.astype(a.dtype.newbyteorder("<")).tobytes())
`, path, out, plugin)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CT slices compressed at test time by DCMTK's dcmcjpeg (IJG's encoder) to JPEG Extended
// (12-bit, as the lossy NLST series) and Baseline (8-bit), at several qualities and with a
// size that is not a multiple of 8, read through ReadSlice bit for bit as pydicom decodes them
// with pylibjpeg-libjpeg, and within 1 of DCMTK's own decoder (IJG's integer IDCT). pydicom
// takes GDCM first for 8-bit JPEG where it is installed: an IJG decoder, so 8-bit slices may
// differ by 1 from what pydicom gives there; one IDCT for both precisions is the choice here.
func TestJPEGDCTMatchesPydicom(t *testing.T) {
	py := codecPython(t)
	for _, tool := range []string{"dcmcjpeg", "dcmdjpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s missing (dcmtk)", tool)
		}
	}
	dir := t.TempDir()
	makeCTVariants(t, py, dir)
	for _, c := range []struct {
		src  string
		args []string
		ts   string
	}{
		{"ct12.dcm", []string{"+ee", "+q", "95"}, jpegExtended},
		{"ct12.dcm", []string{"+ee", "+q", "75"}, jpegExtended},
		{"ct12.dcm", []string{"+ee", "+q", "20"}, jpegExtended},
		{"ct12.dcm", []string{"+ee", "+q", "90", "-ho"}, jpegExtended},
		{"ct12odd.dcm", []string{"+ee", "+q", "80"}, jpegExtended},
		{"ct8.dcm", []string{"+eb", "+q", "85"}, jpegBaseline},
		{"ct8.dcm", []string{"+eb", "+q", "50", "-ho"}, jpegBaseline},
	} {
		t.Run(c.src+" "+strings.Join(c.args, " "), func(t *testing.T) {
			name := strings.TrimSuffix(c.src, ".dcm") + strings.ReplaceAll(strings.Join(c.args, ""), "+", "_")
			enc := filepath.Join(dir, name+".dcm")
			if b, err := exec.Command("dcmcjpeg", append(c.args, filepath.Join(dir, c.src), enc)...).CombinedOutput(); err != nil {
				t.Fatalf("dcmcjpeg: %v\n%s", err, b)
			}
			h, got := readCompressed(t, enc, c.ts)
			want := pydicomPixels(t, py, enc, "pylibjpeg")
			if n, m := sampleDiff(got, want, h.BitsAllocated, false); n > 0 || len(got) != len(want) {
				t.Errorf("%d of %d samples differ from pydicom's decode (by up to %d; %d and %d bytes)", n, h.Rows*h.Columns, m, len(got), len(want))
			}
			ijg := filepath.Join(dir, name+".ijg.dcm")
			if b, err := exec.Command("dcmdjpeg", enc, ijg).CombinedOutput(); err != nil {
				t.Fatalf("dcmdjpeg: %v\n%s", err, b)
			}
			_, ref, err := ReadSlice(ijg)
			if err != nil {
				t.Fatal(err)
			}
			n, m := sampleDiff(got, ref, h.BitsAllocated, false)
			if m > 1 || len(got) != len(ref) {
				t.Errorf("%d samples differ from DCMTK's decode, by up to %d (IDCTs may differ by 1; %d and %d bytes)", n, m, len(got), len(ref))
			}
			t.Logf("%d×%d: equal to pydicom's decode; %d samples differ by 1 from DCMTK's", h.Columns, h.Rows, n)
		})
	}
}

// pydicom's own JPEG Extended test file (12-bit, 256×1024, NM, written by another toolkit):
// the decoder alone, on the frame as stored, gives pydicom's decode. Its JPEG-lossy.dcm, whose
// scan header is invalid for a sequential process, is refused as corrupt, as libjpeg refuses it.
func TestJPEGDCTOnPydicomFiles(t *testing.T) {
	py := codecPython(t)
	path := requirePydicomFile(t, "JPGExtended.dcm")
	frame, err := encapsulatedFrame(pixelValue(t, path, true))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJPEGDCT(frame, 1024, 256, 16, false)
	if err != nil {
		t.Fatal(err)
	}
	want := pydicomPixels(t, py, path, "")
	if n, m := sampleDiff(got, want, 16, false); n > 0 || len(got) != len(want) {
		t.Errorf("%d samples differ from pydicom's decode (by up to %d; %d and %d bytes)", n, m, len(got), len(want))
	}
	frame, err = encapsulatedFrame(pixelValue(t, requirePydicomFile(t, "JPEG-lossy.dcm"), true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeJPEGDCT(frame, 1024, 256, 16, false); !errors.Is(err, ErrCorrupt) {
		t.Errorf("JPEG-lossy.dcm: error %v, want ErrCorrupt", err)
	}
}

// Restart intervals (which dcmcjpeg does not write): an 8-bit image compressed by
// libjpeg-turbo's cjpeg with a restart marker every 3 blocks, and every row of blocks,
// decodes as libjpeg (pydicom's plugin) decodes the same stream.
func TestJPEGDCTRestartIntervals(t *testing.T) {
	py := codecPython(t)
	cjpeg, err := exec.LookPath("cjpeg")
	if err != nil {
		testenv.Missing(t, "cjpeg missing (libjpeg-turbo-progs)")
	}
	dir := t.TempDir()
	pgm := filepath.Join(dir, "ct.pgm")
	runPython(t, py, `
import sys, numpy as np, pydicom
a = pydicom.dcmread(sys.argv[1]).pixel_array.astype(np.int32)[:100, :120]
u8 = ((a - a.min()) * 255 // (a.max() - a.min())).astype(np.uint8)
open(sys.argv[2], "wb").write(b"P5 120 100 255\n" + u8.tobytes())
`, requirePydicomFile(t, "CT_small.dcm"), pgm)
	for _, restart := range []string{"3B", "1"} {
		t.Run("restart "+restart, func(t *testing.T) {
			jpg := filepath.Join(dir, "ct"+restart+".jpg")
			if b, err := exec.Command(cjpeg, "-grayscale", "-quality", "70", "-restart", restart, "-outfile", jpg, pgm).CombinedOutput(); err != nil {
				t.Fatalf("cjpeg: %v\n%s", err, b)
			}
			data, err := os.ReadFile(jpg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeJPEGDCT(data, 100, 120, 8, false)
			if err != nil {
				t.Fatal(err)
			}
			raw := jpg + ".raw"
			runPython(t, py, `
import sys
from libjpeg import decode
open(sys.argv[2], "wb").write(decode(open(sys.argv[1], "rb").read()).tobytes())
`, jpg, raw)
			want, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			if n, m := sampleDiff(got, want, 8, false); n > 0 || len(got) != len(want) {
				t.Errorf("%d samples differ from libjpeg's decode (by up to %d; %d and %d bytes)", n, m, len(got), len(want))
			}
			// the stream does have restart markers
			if !strings.Contains(string(data), "\xff\xd0") {
				t.Error("cjpeg wrote no RST0 marker")
			}
		})
	}
}

// minimalBaselineJPEG is an 8×8, 8-bit baseline stream: unit quantisation, one-code DC and AC
// tables (category 0, end of block), one block whose coefficients are all zero.
func minimalBaselineJPEG() []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0x00}
	for range 64 {
		b = append(b, 1)
	}
	oneCode := func(class byte) []byte {
		return append([]byte{0xFF, 0xC4, 0, 20, class << 4, 1}, append(make([]byte, 15), 0)...)
	}
	b = append(b, oneCode(0)...)
	b = append(b, oneCode(1)...)
	b = append(b, 0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0)
	b = append(b, 0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0)
	return append(b, 0x00, 0xFF, 0xD9)
}

func TestMinimalBaselineJPEG(t *testing.T) {
	got, err := decodeJPEGDCT(minimalBaselineJPEG(), 8, 8, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 128 { // an all-zero block is the level shift: mid-grey
			t.Fatalf("sample %d is %d, want 128", i, v)
		}
	}
}

// FuzzDecodeJPEGDCT: no input makes the decoder panic or return a wrong-sized image.
func FuzzDecodeJPEGDCT(f *testing.F) {
	f.Add(minimalBaselineJPEG(), 8, 8, false)
	f.Fuzz(func(t *testing.T, data []byte, rows, cols int, signed bool) {
		if rows < 0 || cols < 0 || rows*cols > 1<<16 {
			return
		}
		out, err := decodeJPEGDCT(data, rows, cols, 16, signed)
		checkFuzzDecode(t, out, err, rows*cols*2)
	})
}

// LoadBox decodes a compressed slice from the one read of its header pass (which reads an
// encapsulated Pixel Data element to its end): each file is read once, and the box is the
// slice ReadSlice decodes.
func TestLoadBoxReadsACompressedSliceOnce(t *testing.T) {
	py := codecPython(t)
	if _, err := exec.LookPath("dcmcjpeg"); err != nil {
		testenv.Missing(t, "dcmcjpeg missing (dcmtk)")
	}
	dir := t.TempDir()
	makeCTVariants(t, py, dir)
	series := filepath.Join(dir, "series")
	if err := os.Mkdir(series, 0o755); err != nil {
		t.Fatal(err)
	}
	// a second slice 1 mm above the first: a series needs two
	runPython(t, py, `
import sys, pydicom
from pydicom.uid import generate_uid
ds = pydicom.dcmread(sys.argv[1])
ds.ImagePositionPatient[2] += 1
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
ds.save_as(sys.argv[2])
`, filepath.Join(dir, "ct12.dcm"), filepath.Join(dir, "ct12up.dcm"))
	var size int64
	for i, src := range []string{"ct12.dcm", "ct12up.dcm"} {
		enc := filepath.Join(series, fmt.Sprintf("ct%d.dcm", i))
		if b, err := exec.Command("dcmcjpeg", "+ee", filepath.Join(dir, src), enc).CombinedOutput(); err != nil {
			t.Fatalf("dcmcjpeg: %v\n%s", err, b)
		}
		fi, err := os.Stat(enc)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	ser, _, err := ReadSeriesDir(series)
	if err != nil {
		t.Fatal(err)
	}
	h, want, err := ReadSlice(ser.Slices[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	vol, st, err := ser.LoadBox([3]int{0, 0, 0}, [3]int{h.Columns - 1, h.Rows - 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Bytes != size {
		t.Errorf("LoadBox read %d bytes from %d files, want the 2 files of %d bytes once", st.Bytes, st.Files, size)
	}
	for j := range h.Rows {
		for i := range h.Columns {
			stored := float64(binary.LittleEndian.Uint16(want[2*(j*h.Columns+i):]))
			if got, exp := vol.At(i, j, 0), float32(stored*h.Slope+h.Intercept); got != exp {
				t.Fatalf("voxel (%d, %d) is %v, want %v", i, j, got, exp)
			}
		}
	}
}
