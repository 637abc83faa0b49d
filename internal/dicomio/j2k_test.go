package dicomio

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

// requireOpenJPEG returns the process's OpenJPEG, or skips t (fails it under CI) without it.
func requireOpenJPEG(t testing.TB) *openJPEG {
	t.Helper()
	lib, err := loadedOpenJPEG()
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	return lib
}

// j2kFixtures makes, with pydicom 3 and its plugins in the reference environment, the JPEG
// 2000 files of the tests in dir from CT_small.dcm (128², signed 16-bit, stored values
// 128..2191). Every lossless file is checked by pydicom's own round trip first; for every
// lossy file pydicom's decode is written next to it (NAME.raw, little-endian samples).
const j2kFixtures = `
import os, sys
import numpy as np
import pydicom, openjpeg.utils as oj
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEG2000, ExplicitVRLittleEndian

src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def path(name): return os.path.join(out, name)
def native(pixels, bits_stored, signed, name):
    ds = pydicom.dcmread(src)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    for kw in ("PixelPaddingValue", "SmallestImagePixelValue", "LargestImagePixelValue"):
        if kw in ds: del ds[kw]
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path(name))
    return pydicom.dcmread(path(name))
def frame_file(ds, frame, ts, name):
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path(name))
def check(name, want):
    got = pydicom.dcmread(path(name)).pixel_array
    assert (got == want).all(), name + ": pydicom's own round trip differs"

ct = pydicom.dcmread(src).pixel_array
# CT-like signed values, negative too: -1072..991
neg = native(ct.astype(np.int32) - 1200, 16, True, "neg16.dcm")
# unsigned 12-bit over the whole range 0..4095
u12 = (ct.astype(np.int32) - ct.min()) * 4095 // (ct.max() - ct.min())
u12ds = native(u12, 12, False, "u12.dcm")

if mode == "lossless":
    for name, ds in (("ct16", pydicom.dcmread(src)), ("neg16", neg), ("u12", pydicom.dcmread(path("u12.dcm")))):
        want = ds.pixel_array
        ds.compress(JPEG2000Lossless)
        ds.save_as(path(name + ".j2k.dcm"))
        check(name + ".j2k.dcm", want)
    # another encoder: GDCM (python-gdcm, its own OpenJPEG build)
    import gdcm
    r = gdcm.ImageReader(); r.SetFileName(path("neg16.dcm")); assert r.Read()
    c = gdcm.ImageChangeTransferSyntax()
    c.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEG2000Lossless))
    c.SetInput(r.GetImage()); assert c.Change()
    w = gdcm.ImageWriter(); w.SetFileName(path("neg16.gdcm.dcm")); w.SetFile(r.GetFile())
    w.SetImage(c.GetOutput()); assert w.Write()
    check("neg16.gdcm.dcm", neg.pixel_array)
    # a JP2 file instead of a bare codestream
    ds = pydicom.dcmread(path("neg16.dcm"))
    frame_file(ds, oj.encode_array(neg.pixel_array, bits_stored=16, codec_format=1), JPEG2000Lossless, "neg16.jp2.dcm")
    check("neg16.jp2.dcm", neg.pixel_array)
    # signed pixels in an unsigned codestream (PixelRepresentation 1): pydicom corrects the sign
    ds = pydicom.dcmread(path("neg16.dcm"))
    frame_file(ds, oj.encode_array(neg.pixel_array.view(np.uint16), bits_stored=16), JPEG2000Lossless, "neg16.unsigned.dcm")
    check("neg16.unsigned.dcm", neg.pixel_array)
else:
    for name, ds, kw in (
        ("neg16.cr10", neg, dict(j2k_cr=[10])),
        ("neg16.cr40", neg, dict(j2k_cr=[40])),
        ("neg16.layers", neg, dict(j2k_cr=[80, 20, 5])),
        ("neg16.psnr", neg, dict(j2k_psnr=[70])),
        ("u12.cr20", u12ds, dict(j2k_cr=[20])),
    ):
        ds = pydicom.dcmread(ds.filename)
        ds.compress(JPEG2000, **kw)
        ds.save_as(path(name + ".dcm"))
        got = pydicom.dcmread(path(name + ".dcm")).pixel_array
        assert got.dtype in (np.int16, np.uint16), got.dtype
        open(path(name + ".raw"), "wb").write(got.astype(got.dtype.newbyteorder("<")).tobytes())
`

// makeJ2KFixtures runs j2kFixtures in mode (lossless or lossy) and returns its folder.
func makeJ2KFixtures(t *testing.T, mode string) string {
	t.Helper()
	src := requirePydicomFile(t, "CT_small.dcm")
	py := codecPython(t)
	dir := t.TempDir()
	runPython(t, py, j2kFixtures, src, dir, mode)
	return dir
}

// checkJ2KLayout decodes the frame of file path directly and compares what OpenJPEG reports
// of the image (read through the opj_image_t / opj_image_comp_t declared in j2k.go) with the
// DICOM header: a wrong layout would misplace these fields.
func checkJ2KLayout(t *testing.T, lib *openJPEG, path string, h SliceHeader, precision int, signed bool) {
	t.Helper()
	frame, err := encapsulatedFrame(pixelValue(t, path, true))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	info, err := lib.decode(frame, h.Rows, h.Columns, func(c j2kComponent, s []int32) error {
		n = len(s)
		return nil
	})
	if err != nil {
		t.Fatalf("decode the frame: %v", err)
	}
	want := j2kComponent{Components: 1, X0: 0, Y0: 0, X1: h.Columns, Y1: h.Rows, Width: h.Columns, Height: h.Rows,
		DX: 1, DY: 1, Precision: precision, Signed: signed, Factor: 0, ResolutionsCoded: info.ResolutionsCoded}
	if info != want || n != h.Rows*h.Columns {
		t.Errorf("OpenJPEG reports %+v (%d samples), the DICOM header says %+v", info, n, want)
	}
	if info.ResolutionsCoded < 1 || info.ResolutionsCoded > 33 {
		t.Errorf("resno_decoded %d", info.ResolutionsCoded)
	}
}

// JPEG 2000 Lossless files made at test time by pydicom 3's encoder (pylibjpeg-openjpeg) and
// by GDCM read back through ReadSlice bit for bit as the uncompressed files: CT_small itself,
// the same with negative values, an unsigned 12-bit variant, a JP2-wrapped frame, and signed
// pixels in an unsigned codestream (sign corrected as pydicom does).
func TestJPEG2000LosslessEqualsUncompressed(t *testing.T) {
	lib := requireOpenJPEG(t)
	t.Logf("OpenJPEG %s from %s", lib.version, lib.path)
	dir := makeJ2KFixtures(t, "lossless")
	ct := requirePydicomFile(t, "CT_small.dcm")
	for _, c := range []struct {
		file, native string
		precision    int  // of the codestream
		signed       bool // of the codestream
	}{
		{"ct16.j2k.dcm", ct, 16, true},
		{"neg16.j2k.dcm", "neg16.dcm", 16, true},
		{"u12.j2k.dcm", "u12.dcm", 12, false},
		{"neg16.gdcm.dcm", "neg16.dcm", 16, true},
		{"neg16.jp2.dcm", "neg16.dcm", 16, true},
		{"neg16.unsigned.dcm", "neg16.dcm", 16, false},
	} {
		t.Run(c.file, func(t *testing.T) {
			native := c.native
			if !filepath.IsAbs(native) {
				native = filepath.Join(dir, native)
			}
			hw, want, err := ReadSlice(native)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.file)
			h, got := readCompressed(t, path, jpeg2000Lossless)
			if h.PixelRepresentation != hw.PixelRepresentation || h.BitsAllocated != hw.BitsAllocated {
				t.Fatalf("pixel encoding %+v, want %+v", h, hw)
			}
			if !bytes.Equal(got, want) {
				n, maxd := sampleDiff(got, want, 16, h.PixelRepresentation == 1)
				t.Fatalf("decoded %d bytes, %d samples differ (max |diff| %d) from the uncompressed file's %d bytes", len(got), n, maxd, len(want))
			}
			checkJ2KLayout(t, lib, path, h, c.precision, c.signed)
			if w := j2kWavelet(t, path); w != 1 {
				t.Errorf("COD says wavelet %d, want 1 (5/3 reversible) in a lossless file", w)
			}
		})
	}
}

// j2kWavelet returns the wavelet transformation (SPcod's last byte: 0 9/7 irreversible, 1
// 5/3 reversible) of the first COD marker segment in the frame of the file at path.
func j2kWavelet(t *testing.T, path string) int {
	t.Helper()
	frame, err := encapsulatedFrame(pixelValue(t, path, true))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(frame, []byte{0xFF, 0x52})
	if i < 0 || i+14 > len(frame) {
		t.Fatalf("no COD marker segment in %s", path)
	}
	// FF52, Lcod (2), Scod (1), SGcod (4), decompositions, code-block width, height, style, transformation
	return int(frame[i+13])
}

// Lossy JPEG 2000 (9/7 wavelet) made by pydicom's encoder at several rates decodes to exactly
// what pydicom itself decodes (pylibjpeg-openjpeg, with its own OpenJPEG build).
func TestJPEG2000LossyEqualsPydicom(t *testing.T) {
	lib := requireOpenJPEG(t)
	dir := makeJ2KFixtures(t, "lossy")
	for _, c := range []struct {
		name, native string
		precision    int
		signed       bool
	}{
		{"neg16.cr10", "neg16.dcm", 16, true},
		{"neg16.cr40", "neg16.dcm", 16, true},
		{"neg16.layers", "neg16.dcm", 16, true},
		{"neg16.psnr", "neg16.dcm", 16, true},
		{"u12.cr20", "u12.dcm", 12, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, c.name+".raw"))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.name+".dcm")
			h, got := readCompressed(t, path, jpeg2000)
			if !bytes.Equal(got, want) {
				n, maxd := sampleDiff(got, want, 16, c.signed)
				t.Fatalf("%d of %d samples differ from pydicom's decode, max |diff| %d", n, len(want)/2, maxd)
			}
			checkJ2KLayout(t, lib, path, h, c.precision, c.signed)
			// The test means something only if the coding was lossy: the 9/7 wavelet, and
			// samples other than the original's.
			if w := j2kWavelet(t, path); w != 0 {
				t.Errorf("COD says wavelet %d, want 0 (9/7 irreversible)", w)
			}
			_, orig, err := ReadSlice(filepath.Join(dir, c.native))
			if err != nil {
				t.Fatal(err)
			}
			n, maxd := sampleDiff(got, orig, 16, c.signed)
			if n == 0 {
				t.Errorf("the lossy decode equals the original")
			}
			t.Logf("%d bytes coded; %d of %d samples differ from the original, max |diff| %d", len(pixelValue(t, path, true)), n, len(orig)/2, maxd)
		})
	}
}

// Without the library (CONNECTOME_OPENJPEG_LIB pointing at a missing file), a JPEG 2000 frame
// fails with an error that names the transfer syntax, the library and its Debian package,
// and wraps ErrUnsupported. The process-wide loader is exercised in a child process, where it
// has not loaded anything yet; the loader itself, here.
func TestJPEG2000MissingLibrary(t *testing.T) {
	_, err := loadOpenJPEG("/nonexistent/libopenjp2.so.7")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "libopenjp2-7") {
		t.Errorf("loader: %v", err)
	}
	// a library that is not OpenJPEG: loaded, then refused for its missing entry points
	_, err = loadOpenJPEG("libc.so.6")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no symbol opj_version") {
		t.Errorf("libc as OpenJPEG: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestJPEG2000MissingLibraryChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), openJPEGEnv+"=/nonexistent", "CONNECTOME_J2K_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestJPEG2000MissingLibraryChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

func TestJPEG2000MissingLibraryChild(t *testing.T) {
	if os.Getenv("CONNECTOME_J2K_CHILD") == "" {
		t.Skip("run by TestJPEG2000MissingLibrary")
	}
	for _, ts := range []string{jpeg2000Lossless, jpeg2000} {
		_, err := frameDecoderFor(ts)(j2kSeed(t), SliceHeader{TransferSyntax: ts, Rows: 32, Columns: 32, BitsAllocated: 16, PixelRepresentation: 1})
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("error %v, want ErrUnsupported", err)
		}
		for _, s := range []string{ts, "/nonexistent", "libopenjp2.so.7", "libopenjp2-7", openJPEGEnv} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %q", err, s)
			}
		}
		t.Log(err)
	}
}

// j2kSeedHex is a 32×32 signed 16-bit lossless codestream (pylibjpeg-openjpeg 2.6.0) of
// the samples x² − 40y − 1000 (x the column, y the row); j2kRGBHex a 32×32 three-component
// 8-bit one.
const (
	j2kSeedHex = "ff4fff5100290000000000200000002000000000000000000000002000000020000000000000000000018f0101ff52000c00000001000504040001ff5c00134080888890888890888890888890888890ff640025000143726561746564206279204f70656e4a5045472076657273696f6e20322e352e32ff90000a0000000000970001ff93c0fe408006c9c01f981403f60200033105d7c01f982c01f982000cf44ffb370c175a4fc00fc036007e00c022187368f3977ca21e11f735bf00cfb3cc2a7fc00fc04a003ed0a036a199cdf0d3e4acbb48e5f02ac7cff333fb3e62a29a195202f10a7fc003ea168007d4125fa7c733f8c2d80607cdb8d11895a19c5efc6ab0217f9d96a9003e1eb8484bffd9"
	j2kRGBHex  = "ff4fff51002f000000000020000000200000000000000000000000200000002000000000000000000003070101070101070101ff52000c00000001000504040001ff5c00134040484850484850484850484850484850ff640025000143726561746564206279204f70656e4a5045472076657273696f6e20322e352e32ff90000a0000000000290001ff93df800807cfb40409df800807808080808080808080808080808080ffd9"
)

func j2kSeed(t testing.TB) []byte {
	b, err := hex.DecodeString(j2kSeedHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func j2kSeedSamples() []byte {
	out := make([]byte, 2*32*32)
	for y := range 32 {
		for x := range 32 {
			binary.LittleEndian.PutUint16(out[2*(32*y+x):], uint16(int16(x*x-40*y-1000)))
		}
	}
	return out
}

// Valid, truncated, damaged and refused frames: every failure wraps ErrCorrupt or
// ErrUnsupported as it should, none crashes.
func TestJPEG2000DecodeCases(t *testing.T) {
	requireOpenJPEG(t)
	seed := j2kSeed(t)
	rgb, _ := hex.DecodeString(j2kRGBHex)
	badSIZ := bytes.Clone(seed)
	badSIZ[8] = 0xFF // Xsiz high byte: 4278190112 columns
	for _, c := range []struct {
		name        string
		frame       []byte
		rows, cols  int
		bits        int
		signed      bool
		want        []byte
		err         error
		errContains string
	}{
		{"valid", seed, 32, 32, 16, true, j2kSeedSamples(), nil, ""},
		{"padded to even length", append(bytes.Clone(seed), 0), 32, 32, 16, true, j2kSeedSamples(), nil, ""},
		{"empty", nil, 32, 32, 16, true, nil, ErrCorrupt, "neither"},
		{"garbage", bytes.Repeat([]byte{0xA5}, 300), 32, 32, 16, true, nil, ErrCorrupt, "neither"},
		{"SOC SIZ then garbage", append([]byte{0xFF, 0x4F, 0xFF, 0x51}, bytes.Repeat([]byte{0xA5}, 300)...), 32, 32, 16, true, nil, ErrCorrupt, "header failed"},
		{"main header only", seed[:0x6f], 32, 32, 16, true, nil, ErrCorrupt, ""},
		{"truncated in the tile", seed[:len(seed)/2], 32, 32, 16, true, nil, ErrCorrupt, ""},
		{"truncated before EOC", seed[:len(seed)-10], 32, 32, 16, true, nil, ErrCorrupt, ""},
		{"absurd size", badSIZ, 32, 32, 16, true, nil, ErrCorrupt, ""},
		{"other size than the header's", seed, 32, 31, 16, true, nil, ErrCorrupt, "the header says 32×31"},
		{"three components", rgb, 32, 32, 8, false, nil, ErrUnsupported, "3 components"},
		{"12 bits allocated", seed, 32, 32, 12, true, nil, ErrUnsupported, "12 bits allocated"},
		{"samples do not fit 8 bits", seed, 32, 32, 8, true, nil, ErrCorrupt, "does not fit 8 bits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeJPEG2000(c.frame, jpeg2000, c.rows, c.cols, c.bits, c.signed)
			checkDecoded(t, got, err, c.want, c.err)
			if err != nil && !strings.Contains(err.Error(), c.errContains) {
				t.Errorf("error %q does not say %q", err, c.errContains)
			}
			if err != nil && !strings.Contains(err.Error(), jpeg2000) {
				t.Errorf("error %q does not name the transfer syntax", err)
			}
			t.Log(err)
		})
	}
}

// j2kBox is one JP2 box.
func j2kBox(kind string, body ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(bytes.Join(body, nil))))
	return append(append(b, kind...), bytes.Join(body, nil)...)
}

// jp2Wrap wraps the 32×32 signed 16-bit codestream cs in a JP2 file: signature, file type,
// header (image header, greyscale colour, and the boxes of extra), codestream.
func jp2Wrap(cs []byte, extra ...[]byte) []byte {
	ihdr := []byte{0, 0, 0, 32, 0, 0, 0, 32, 0, 1, 0x80 | 15, 7, 0, 0}
	colr := []byte{1, 0, 0, 0, 0, 0, 17}
	hdr := append([][]byte{j2kBox("ihdr", ihdr), j2kBox("colr", colr)}, extra...)
	return bytes.Join([][]byte{
		j2kSignature,
		j2kBox("ftyp", []byte("jp2 \x00\x00\x00\x00jp2 ")),
		j2kBox("jp2h", hdr...),
		j2kBox("jp2c", cs),
	}, nil)
}

// A JP2 file decodes as its codestream; one whose palette turns the component into three
// is refused after decoding (OpenJPEG replaces the components then).
func TestJPEG2000JP2(t *testing.T) {
	requireOpenJPEG(t)
	seed := j2kSeed(t)
	got, err := decodeJPEG2000(jp2Wrap(seed), jpeg2000, 32, 32, 16, true)
	checkDecoded(t, got, err, j2kSeedSamples(), nil)
	// pclr: 2 entries of 3 unsigned 8-bit columns; cmap: the three channels from component 0
	pclr := j2kBox("pclr", []byte{0, 2, 3, 7, 7, 7, 1, 2, 3, 4, 5, 6})
	cmap := j2kBox("cmap", []byte{0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 2})
	_, err = decodeJPEG2000(jp2Wrap(seed, pclr, cmap), jpeg2000, 32, 32, 16, true)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "decoded to 3 components") {
		t.Fatalf("palette: %v", err)
	}
	t.Log(err)
}

// JPEG 2000 has no checksum: damaged packet data decodes to another image or fails, with
// ErrCorrupt; it must not crash.
func TestJPEG2000DamagedData(t *testing.T) {
	requireOpenJPEG(t)
	seed := j2kSeed(t)
	flipped := bytes.Clone(seed)
	for i := 150; i < 200; i++ { // inside the tile's packet data
		flipped[i] ^= 0x5A
	}
	out, err := decodeJPEG2000(flipped, jpeg2000, 32, 32, 16, true)
	switch {
	case err != nil && !errors.Is(err, ErrCorrupt):
		t.Fatalf("error %v, want ErrCorrupt", err)
	case err == nil && len(out) != 2*32*32:
		t.Fatalf("%d bytes", len(out))
	case err == nil:
		n, maxd := sampleDiff(out, j2kSeedSamples(), 16, true)
		t.Logf("damaged frame decodes: %d samples differ, max |diff| %d", n, maxd)
	default:
		t.Log(err)
	}
}

// Every prefix of a valid frame shorter than the whole is an error (OpenJPEG's strict mode),
// never an image.
func TestJPEG2000EveryTruncation(t *testing.T) {
	requireOpenJPEG(t)
	seed := j2kSeed(t)
	for n := 0; n < len(seed); n++ {
		out, err := decodeJPEG2000(seed[:n], jpeg2000Lossless, 32, 32, 16, true)
		if err == nil {
			t.Errorf("prefix of %d of %d bytes decodes (%d bytes, equal to the whole: %v)", n, len(seed), len(out), bytes.Equal(out, j2kSeedSamples()))
		} else if !errors.Is(err, ErrCorrupt) {
			t.Errorf("prefix of %d bytes: %v", n, err)
		}
	}
}

// FuzzDecodeJPEG2000: no input makes the decoder crash, return a wrong-sized image or an
// unclassified error. The size is fixed at the seeds' 32×32, so that mutated frames get past
// the size check (made on the header, before decoding) into OpenJPEG's decoder.
func FuzzDecodeJPEG2000(f *testing.F) {
	requireOpenJPEG(f)
	seed := j2kSeed(f)
	rgb, _ := hex.DecodeString(j2kRGBHex)
	f.Add(seed, true, true)
	f.Add(rgb, false, false)
	f.Add(jp2Wrap(seed), true, true)
	f.Fuzz(func(t *testing.T, frame []byte, wide, signed bool) {
		bits := 8
		if wide {
			bits = 16
		}
		out, err := decodeJPEG2000(frame, jpeg2000, 32, 32, bits, signed)
		checkFuzzDecode(t, out, err, 32*32*bits/8)
	})
}

// Decodes in several goroutines at once share the process's library and give the same image.
func TestJPEG2000Concurrent(t *testing.T) {
	requireOpenJPEG(t)
	seed, want := j2kSeed(t), j2kSeedSamples()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				got, err := decodeJPEG2000(seed, jpeg2000Lossless, 32, 32, 16, true)
				if err == nil && !bytes.Equal(got, want) {
					err = errors.New("another image")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
