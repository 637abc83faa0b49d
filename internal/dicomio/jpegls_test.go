package dicomio

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

// jlsVariantsScript writes three uncompressed variants of CT_small (argv[1]) into the folder
// argv[2]: u12.dcm, unsigned 12-bit (values spread over 0..4095, clipped at the top, which
// gives runs at MAXVAL); s12.dcm, signed 12-bit with negative values; u8.dcm, unsigned 8-bit
// in 8 bits allocated, whose small errors use the Golomb parameter k = 0 and with it the
// remapping of errors in contexts of negative bias (T.87 A.5.2).
const jlsVariantsScript = `
import sys, os, numpy as np, pydicom
src, out = sys.argv[1], sys.argv[2]
for name, bits, signed in (("u12.dcm", 12, False), ("s12.dcm", 12, True), ("u8.dcm", 8, False)):
    ds = pydicom.dcmread(src)
    a = ds.pixel_array.astype(np.int32)
    if bits == 8:
        a = np.clip((a - a.min()) >> 3, 0, 255).astype("u1")
        ds.BitsAllocated = 8
        ds["PixelData"].VR = "OB"
    elif signed:
        a = (a - 1200).astype("<i2")
        assert a.min() < 0 and a.min() >= -2048 and a.max() <= 2047
    else:
        a = np.clip((a - a.min()) * 2, 0, 4095).astype("<u2")
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    ds.PixelData = a.tobytes()
    ds.save_as(os.path.join(out, name))
`

// jlsSources returns CT_small and its three variants, made in dir.
func jlsSources(t *testing.T, py, dir string) map[string]string {
	t.Helper()
	ct := requirePydicomFile(t, "CT_small.dcm")
	runPython(t, py, jlsVariantsScript, ct, dir)
	return map[string]string{
		"s16": ct,
		"u12": filepath.Join(dir, "u12.dcm"),
		"s12": filepath.Join(dir, "s12.dcm"),
		"u8":  filepath.Join(dir, "u8.dcm"),
	}
}

func jlsRequireTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Missing(t, "%s missing (dcmtk)", tool)
	}
	return p
}

// jlsCompressScript compresses argv[1] into argv[2] with pydicom's own JPEG-LS encoder
// (pyjpegls, which is CharLS): lossless, or near-lossless with NEAR argv[3] when not 0.
const jlsCompressScript = `
import sys, pydicom
from pydicom.uid import JPEGLSLossless, JPEGLSNearLossless
ds = pydicom.dcmread(sys.argv[1])
near = int(sys.argv[3])
if near:
    ds.compress(JPEGLSNearLossless, jls_error=near)
else:
    ds.compress(JPEGLSLossless)
ds.save_as(sys.argv[2])
`

// jlsDecodeScript writes pydicom's decoding of argv[1] (plugin pyjpegls) to argv[2], as
// native little-endian samples.
const jlsDecodeScript = `
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
a = ds.pixel_array
dt = "<i2" if ds.PixelRepresentation else "<u2"
open(sys.argv[2], "wb").write(a.astype(dt).tobytes())
`

// CT_small (signed 16-bit) and its unsigned and signed 12-bit variants, compressed to JPEG-LS
// Lossless by DCMTK's dcmcjpls (default parameters, and custom thresholds and RESET, which it
// writes in an LSE segment) and by pydicom's encoder (CharLS), read back through ReadSlice
// bit for bit as the uncompressed files.
func TestJPEGLSLosslessSliceEqualsUncompressed(t *testing.T) {
	py := codecPython(t)
	enc := jlsRequireTool(t, "dcmcjpls")
	dir := t.TempDir()
	for name, src := range jlsSources(t, py, dir) {
		_, want, err := ReadSlice(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			encoder string
			args    []string
		}{
			{"dcmcjpls", nil},
			{"dcmcjpls", []string{"+t1", "5", "+t2", "9", "+t3", "30", "+rs", "32"}},
			{"pydicom", nil},
		} {
			t.Run(strings.Join(append([]string{name, c.encoder}, c.args...), " "), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "ct.dcm")
				if c.encoder == "pydicom" {
					runPython(t, py, jlsCompressScript, src, out, "0")
				} else if b, err := exec.Command(enc, append(c.args, src, out)...).CombinedOutput(); err != nil {
					t.Fatalf("dcmcjpls: %v\n%s", err, b)
				}
				h, got := readCompressed(t, out, jpegLSLossless)
				if !bytes.Equal(got, want) {
					n, _ := sampleDiff(got, want, h.BitsAllocated, false)
					t.Fatalf("decoded %d bytes, %d differ from the uncompressed file's %d", len(got), n, len(want))
				}
			})
		}
	}
}

// Near-lossless (NEAR 2 and 5): our decoding equals pydicom's (pyjpegls) and DCMTK's
// (dcmdjpls; its signed 12-bit samples sign-extended first) bit for bit, and differs from the
// original by at most NEAR, but does differ. DCMTK refuses to
// encode signed samples near-losslessly, so it encodes only the unsigned variant; pydicom
// encodes all three.
func TestJPEGLSNearLosslessMatchesReferences(t *testing.T) {
	py := codecPython(t)
	enc, dec := jlsRequireTool(t, "dcmcjpls"), jlsRequireTool(t, "dcmdjpls")
	dir := t.TempDir()
	sources := jlsSources(t, py, dir)
	for _, near := range []int{2, 5} {
		for _, c := range []struct{ src, encoder string }{
			{"u12", "dcmcjpls"}, {"u12", "pydicom"}, {"s12", "pydicom"}, {"s16", "pydicom"},
		} {
			n := strconv.Itoa(near)
			t.Run(c.src+" "+c.encoder+" NEAR "+n, func(t *testing.T) {
				h, orig, err := ReadSlice(sources[c.src])
				if err != nil {
					t.Fatal(err)
				}
				tmp := t.TempDir()
				out := filepath.Join(tmp, "ct.dcm")
				if c.encoder == "pydicom" {
					runPython(t, py, jlsCompressScript, sources[c.src], out, n)
				} else if b, err := exec.Command(enc, "+en", "+md", n, sources[c.src], out).CombinedOutput(); err != nil {
					t.Fatalf("dcmcjpls: %v\n%s", err, b)
				}
				_, got := readCompressed(t, out, jpegLSNearLossless)

				ref := filepath.Join(tmp, "pydicom.raw")
				runPython(t, py, jlsDecodeScript, out, ref)
				want, err := os.ReadFile(ref)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					n, _ := sampleDiff(got, want, 16, false)
					t.Fatalf("decoded %d bytes, %d differ from pydicom's decoding", len(got), n)
				}

				native := filepath.Join(tmp, "dcmtk.dcm")
				if b, err := exec.Command(dec, out, native).CombinedOutput(); err != nil {
					t.Fatalf("dcmdjpls: %v\n%s", err, b)
				}
				_, dcmtk, err := ReadSlice(native)
				if err != nil {
					t.Fatal(err)
				}
				if c.src == "s12" {
					// DCMTK leaves the bits above High Bit 0; the pipeline needs them set
					dcmtk = bytes.Clone(dcmtk)
					for i := 0; i+1 < len(dcmtk); i += 2 {
						v := int16(binary.LittleEndian.Uint16(dcmtk[i:])<<4) >> 4
						binary.LittleEndian.PutUint16(dcmtk[i:], uint16(v))
					}
				}
				if !bytes.Equal(got, dcmtk) {
					n, _ := sampleDiff(got, dcmtk, 16, false)
					t.Fatalf("decoded %d bytes, %d differ from dcmdjpls's decoding", len(got), n)
				}

				_, worst := sampleDiff(got, orig, 16, h.PixelRepresentation == 1)
				if worst > near || bytes.Equal(got, orig) {
					t.Fatalf("largest difference to the original %d, NEAR %d (identical: %v)", worst, near, bytes.Equal(got, orig))
				}
			})
		}
	}
}

// jlsRestartScript makes a JPEG-LS stream with a restart interval of argv[2] lines from the
// unsigned 12-bit variant argv[1]: each interval is coded as an image of its own (T.87: the
// contexts, the run index and the line above are reset at each RSTm), so CharLS encodes the
// strips and the script joins their entropy-coded data with RST markers under one frame
// header and a DRI segment. CharLS must decode the joined stream to the original too. It
// writes the stream to argv[3] and the samples to argv[4].
const jlsRestartScript = `
import sys, struct, numpy as np, pydicom, jpeg_ls
ds = pydicom.dcmread(sys.argv[1])
a = ds.pixel_array.astype("<u2")
ri = int(sys.argv[2])
rows, cols = a.shape
head, body = None, b""
for m, y in enumerate(range(0, rows, ri)):
    strip = a[y:y + ri]
    s = bytes(jpeg_ls.encode_buffer(strip.tobytes(), strip.shape[0], cols, 1, 12))
    sos = s.index(b"\xff\xda")
    data = s[sos + 2 + struct.unpack(">H", s[sos + 2:sos + 4])[0]:]
    assert data.endswith(b"\xff\xd9")
    if head is None:
        head = bytearray(s[:sos])
        sof = head.index(b"\xff\xf7")
        head[sof + 5:sof + 7] = struct.pack(">H", rows)
        head += b"\xff\xdd" + struct.pack(">HH", 4, ri) + s[sos:sos + 2 + struct.unpack(">H", s[sos + 2:sos + 4])[0]]
    else:
        body += bytes([0xFF, 0xD0 + (m - 1) % 8])
    body += data[:-2]
stream = bytes(head) + body + b"\xff\xd9"
back = np.frombuffer(bytes(jpeg_ls.decode_pixel_data(stream)[0]), "<u2").reshape(rows, cols)
assert (back == a).all(), "CharLS decodes the joined stream to other samples"
open(sys.argv[3], "wb").write(stream)
open(sys.argv[4], "wb").write(a.tobytes())
`

// A stream with restart intervals of 10 lines (12 RST markers, RST0 to RST7 then RST0 to
// RST3) decodes to the image, and one whose markers are out of order fails as corrupt.
func TestJPEGLSRestartIntervals(t *testing.T) {
	py := codecPython(t)
	dir := t.TempDir()
	src := jlsSources(t, py, dir)["u12"]
	stream, raw := filepath.Join(dir, "ri.jls"), filepath.Join(dir, "ri.raw")
	runPython(t, py, jlsRestartScript, src, "10", stream, raw)
	data, err := os.ReadFile(stream)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJPEGLS(data, 128, 128, 16, false)
	if err != nil || !bytes.Equal(got, want) {
		n, _ := sampleDiff(got, want, 16, false)
		t.Fatalf("decoded %d bytes (%v), %d differ", len(got), err, n)
	}
	rst3 := bytes.Index(data, []byte{0xFF, 0xD3})
	if rst3 < 0 {
		t.Fatal("no RST3 marker")
	}
	swapped := bytes.Clone(data)
	swapped[rst3+1] = 0xD4
	if _, err := decodeJPEGLS(swapped, 128, 128, 16, false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("RST4 in place of RST3: %v, want ErrCorrupt", err)
	}
}

// A 512×512 16-bit slice (CT_small enlarged, with noise, coded by CharLS) decodes to the
// image: the full-size CT case, long runs and many contexts. Its speed is measured by
// BenchmarkReadSliceCompressed (docs/BENCHMARKS.md), not here.
func TestJPEGLS512Slice(t *testing.T) {
	py := codecPython(t)
	dir := t.TempDir()
	stream := filepath.Join(dir, "big.jls")
	raw := filepath.Join(dir, "big.raw")
	runPython(t, py, `
import sys, numpy as np, pydicom, jpeg_ls
a = pydicom.dcmread(sys.argv[1]).pixel_array.astype(np.int32)
a = np.kron(a, np.ones((4, 4), np.int32)) + np.random.default_rng(1).integers(0, 40, (512, 512))
a = a.astype("<u2")
open(sys.argv[2], "wb").write(bytes(jpeg_ls.encode_buffer(a.tobytes(), 512, 512, 1, 16)))
open(sys.argv[3], "wb").write(a.tobytes())
`, requirePydicomFile(t, "CT_small.dcm"), stream, raw)
	data, err := os.ReadFile(stream)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJPEGLS(data, 512, 512, 16, false)
	if err != nil || !bytes.Equal(got, want) {
		n, _ := sampleDiff(got, want, 16, false)
		t.Fatalf("decoded %d bytes (%v), %d differ", len(got), err, n)
	}
}

// jlsTiny is a hand-made 4×4 8-bit JPEG-LS Lossless stream of zeros: every line is one run
// (T.87 A.7.1), coded by 4 + 2 + 2 + 1 one-bits as RUNindex climbs; after the eight ones of
// 0xFF the next byte carries a stuffed 0 bit, the ninth one and padding (0x40).
func jlsTiny(mutate func(sof, lse, sos []byte) (s, l, o []byte)) []byte {
	sof := []byte{0xFF, 0xF7, 0, 11, 8, 0, 4, 0, 4, 1, 1, 0x11, 0}
	sos := []byte{0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0}
	var lse []byte
	if mutate != nil {
		sof, lse, sos = mutate(sof, lse, sos)
	}
	return bytes.Join([][]byte{{0xFF, 0xD8}, sof, lse, sos, {0xFF, 0x40, 0xFF, 0xD9}}, nil)
}

// jlsSmall is an 8×6 12-bit image (edges, runs, values at 0 and MAXVAL) coded by CharLS
// (pyjpegls 1.5.1) losslessly and with NEAR 3, with the samples CharLS decodes them to: the
// decoder's test that needs no reference environment.
var (
	jlsSmallSamples = []uint16{
		0, 4095, 17, 17, 17, 17, 900, 901,
		5, 4000, 17, 17, 17, 18, 905, 903,
		9, 3990, 17, 17, 17, 17, 2048, 2047,
		12, 3900, 100, 200, 300, 400, 500, 600,
		12, 12, 12, 12, 12, 12, 12, 12,
		4095, 4095, 4095, 0, 0, 0, 1, 2,
	}
	jlsSmallNear3Samples = []uint16{
		0, 4095, 14, 14, 14, 14, 903, 904,
		7, 3997, 14, 14, 14, 21, 903, 903,
		7, 3990, 14, 14, 14, 14, 2051, 2045,
		15, 3898, 98, 203, 302, 400, 497, 602,
		15, 12, 12, 12, 12, 10, 9, 9,
		4095, 4092, 4092, 0, 0, 0, 0, 0,
	}
	jlsSmallLossless = jlsHex("ffd8fff7000b0c0006000801011100ffda0008010100000000a06381040000000002dc90251fa068" +
		"32a1c89281c0000000063b60c43802511d8a24000000000e0b88f1817e008ec511d8a23b8820860100814200ffd9")
	jlsSmallNear3 = jlsHex("ffd8fff7000b0c0006000801011100ffda0008010100030000a158440000000004fc89390d30c251" +
		"a000018d4d1eeb6e0000000e3b00360eb6db6e924b041040ffd9")
)

func jlsHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func jlsLE16(samples []uint16) []byte {
	b := make([]byte, 2*len(samples))
	for i, v := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// The small CharLS streams decode to CharLS's samples; the lossless one, read as signed,
// sign-extends the samples of the top bit from 12 to 16 bits.
func TestJPEGLSSmallCharLSStreams(t *testing.T) {
	got, err := decodeJPEGLS(jlsSmallLossless, 6, 8, 16, false)
	checkDecoded(t, got, err, jlsLE16(jlsSmallSamples), nil)
	got, err = decodeJPEGLS(jlsSmallNear3, 6, 8, 16, false)
	checkDecoded(t, got, err, jlsLE16(jlsSmallNear3Samples), nil)
	signed := make([]uint16, len(jlsSmallSamples))
	for i, v := range jlsSmallSamples {
		signed[i] = uint16(int16(v<<4) >> 4)
	}
	got, err = decodeJPEGLS(jlsSmallLossless, 6, 8, 16, true)
	checkDecoded(t, got, err, jlsLE16(signed), nil)
}

// Header and stream errors, each wrapping the right sentinel; the untouched stream decodes.
func TestJPEGLSHeaderErrors(t *testing.T) {
	zeros16 := make([]byte, 32)
	for _, c := range []struct {
		name       string
		data       []byte
		rows, cols int
		bits       int
		want       []byte
		err        error
	}{
		{"valid", jlsTiny(nil), 4, 4, 16, zeros16, nil},
		{"valid 8-bit", jlsTiny(nil), 4, 4, 8, make([]byte, 16), nil},
		{"no SOI", jlsTiny(nil)[2:], 4, 4, 16, nil, ErrCorrupt},
		{"no SOF55", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) { return nil, l, o }), 4, 4, 16, nil, ErrCorrupt},
		{"SOF3, not JPEG-LS", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			s = bytes.Clone(s)
			s[1] = 0xC3
			return s, l, o
		}), 4, 4, 16, nil, ErrUnsupported},
		{"two components", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			return []byte{0xFF, 0xF7, 0, 14, 8, 0, 4, 0, 4, 2, 1, 0x11, 0, 2, 0x11, 0}, l, o
		}), 4, 4, 16, nil, ErrUnsupported},
		{"LSE mapping table", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			return s, []byte{0xFF, 0xF8, 0, 8, 2, 1, 1, 0, 1, 2}, o
		}), 4, 4, 16, nil, ErrUnsupported},
		{"scan selects a mapping table", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			o = bytes.Clone(o)
			o[6] = 1
			return s, l, o
		}), 4, 4, 16, nil, ErrUnsupported},
		{"line interleave", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			o = bytes.Clone(o)
			o[8] = 1
			return s, l, o
		}), 4, 4, 16, nil, ErrUnsupported},
		{"NEAR above MAXVAL/2", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			o = bytes.Clone(o)
			o[7] = 128
			return s, l, o
		}), 4, 4, 16, nil, ErrCorrupt},
		{"thresholds out of order", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			return s, []byte{0xFF, 0xF8, 0, 13, 1, 0, 0, 0, 9, 0, 5, 0, 30, 0, 0}, o
		}), 4, 4, 16, nil, ErrCorrupt},
		{"custom parameters", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			return s, []byte{0xFF, 0xF8, 0, 13, 1, 0, 200, 0, 5, 0, 9, 0, 30, 0, 32}, o
		}), 4, 4, 16, zeros16, nil},
		{"restart marker missing", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			return s, []byte{0xFF, 0xDD, 0, 4, 0, 1}, o
		}), 4, 4, 16, nil, ErrCorrupt},
		{"other size than the header's", jlsTiny(nil), 4, 5, 16, nil, ErrCorrupt},
		{"12 bits allocated", jlsTiny(nil), 4, 4, 12, nil, ErrUnsupported},
		{"precision above bits allocated", jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
			s = bytes.Clone(s)
			s[4] = 12
			return s, l, o
		}), 4, 4, 8, nil, ErrCorrupt},
		{"truncated entropy-coded data", jlsTiny(nil)[:len(jlsTiny(nil))-4], 4, 4, 16, nil, ErrCorrupt},
		{"truncated header", jlsTiny(nil)[:20], 4, 4, 16, nil, ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeJPEGLS(c.data, c.rows, c.cols, c.bits, false)
			checkDecoded(t, got, err, c.want, c.err)
		})
	}
}

// FuzzDecodeJPEGLS: no input makes the decoder panic or return a wrong-sized image, and every
// error is classified.
func FuzzDecodeJPEGLS(f *testing.F) {
	f.Add(jlsTiny(nil), 4, 4, false)
	f.Add(jlsSmallLossless, 6, 8, false)
	f.Add(jlsSmallNear3, 6, 8, true)
	f.Add(jlsTiny(func(s, l, o []byte) ([]byte, []byte, []byte) {
		return s, []byte{0xFF, 0xDD, 0, 4, 0, 2}, o
	}), 4, 4, true)
	f.Fuzz(func(t *testing.T, data []byte, rows, cols int, signed bool) {
		if rows < 0 || cols < 0 || rows*cols > 1<<16 {
			return
		}
		out, err := decodeJPEGLS(data, rows, cols, 16, signed)
		checkFuzzDecode(t, out, err, rows*cols*2)
	})
}

// pydicom's own pair of one MR image (64², signed 16-bit), uncompressed and JPEG-LS
// Lossless (written by another toolkit): the decoder alone, on the frame as stored, gives the
// uncompressed pixel data (ReadSlice takes CT only).
func TestJPEGLSOnPydicomPair(t *testing.T) {
	native := pixelValue(t, requirePydicomFile(t, "MR_small.dcm"), false)
	frame, err := encapsulatedFrame(pixelValue(t, requirePydicomFile(t, "MR_small_jpeg_ls_lossless.dcm"), true))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJPEGLS(frame, 64, 64, 16, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := native[:64*64*2]; !bytes.Equal(got, want) {
		n, _ := sampleDiff(got, want, 16, false)
		t.Fatalf("decoded %d bytes, %d differ from MR_small's %d", len(got), n, len(want))
	}
}
