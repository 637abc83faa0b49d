package dicomio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/uid"

	"connectome/internal/dicomio"
	"connectome/internal/testenv"
)

// dcmWriter writes DICOM by hand, so that a test can put any length in any header.
type dcmWriter struct {
	b        bytes.Buffer
	implicit bool
	value    int // offset of the value after the last lie
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// newDCM writes preamble, DICM and a file meta group naming ts.
func newDCM(ts string) *dcmWriter {
	d := &dcmWriter{implicit: ts == uid.ImplicitVRLittleEndian}
	d.b.Write(make([]byte, 128))
	d.b.WriteString("DICM")
	var meta dcmWriter
	meta.el(0x0002, 0x0001, "OB", []byte{0, 1})
	meta.str(0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.2")
	meta.str(0x0002, 0x0010, "UI", ts)
	d.metaLen(uint32(meta.b.Len()))
	d.b.Write(meta.b.Bytes())
	return d
}

// metaLen writes the (0002,0000) group length element (always explicit).
func (d *dcmWriter) metaLen(n uint32) {
	d.b.Write([]byte{2, 0, 0, 0, 'U', 'L', 4, 0})
	d.b.Write(le32(n))
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OF", "OD", "OL":
		return true
	}
	return false
}

// hdr writes an element header with any length.
func (d *dcmWriter) hdr(g, e uint16, vr string, vl uint32) *dcmWriter {
	d.b.Write(le16(g))
	d.b.Write(le16(e))
	switch {
	case d.implicit || g == 0xFFFE:
		d.b.Write(le32(vl))
	case longVR(vr):
		d.b.WriteString(vr)
		d.b.Write([]byte{0, 0})
		d.b.Write(le32(vl))
	default:
		d.b.WriteString(vr)
		d.b.Write(le16(uint16(vl)))
	}
	return d
}

// lie writes a header declaring vl bytes and remembers where its value starts.
func (d *dcmWriter) lie(g, e uint16, vr string, vl uint32) *dcmWriter {
	return d.hdr(g, e, vr, vl).mark()
}

// mark remembers the current offset (in value).
func (d *dcmWriter) mark() *dcmWriter {
	d.value = d.b.Len()
	return d
}

func (d *dcmWriter) el(g, e uint16, vr string, val []byte) *dcmWriter {
	d.hdr(g, e, vr, uint32(len(val)))
	d.b.Write(val)
	return d
}

func (d *dcmWriter) str(g, e uint16, vr, s string) *dcmWriter {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	return d.el(g, e, vr, []byte(s))
}

func (d *dcmWriter) us(g, e uint16, v int) *dcmWriter { return d.el(g, e, "US", le16(uint16(v))) }
func (d *dcmWriter) item(vl uint32) *dcmWriter        { return d.hdr(0xFFFE, 0xE000, "", vl) }
func (d *dcmWriter) itemEnd() *dcmWriter              { return d.hdr(0xFFFE, 0xE00D, "", 0) }
func (d *dcmWriter) seqEnd() *dcmWriter               { return d.hdr(0xFFFE, 0xE0DD, "", 0) }

const undefined = 0xFFFFFFFF

// sliceSpec is a small CT slice; the hooks replace or add parts of it.
type sliceSpec struct {
	implicit   bool
	rows, cols int
	private    int                             // bytes of a private OB element before the image elements
	seq        func(*dcmWriter)                // written where (0008,1140) goes
	name       func(*dcmWriter)                // replaces PatientName
	pixel      func(*dcmWriter)                // replaces native Pixel Data
	edit       func(*dcmWriter, []byte) []byte // last, on the whole file
}

func (s sliceSpec) build() (*dcmWriter, []byte) {
	ts := uid.ExplicitVRLittleEndian
	if s.implicit {
		ts = uid.ImplicitVRLittleEndian
	}
	if s.rows == 0 {
		s.rows, s.cols = 4, 4
	}
	d := newDCM(ts)
	d.str(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
	d.str(0x0008, 0x0018, "UI", "2.25.7.1")
	d.str(0x0008, 0x0060, "CS", "CT")
	if s.private > 0 {
		d.str(0x0009, 0x0010, "LO", "CONNECTOME")
		d.el(0x0009, 0x1010, "OB", make([]byte, s.private))
	}
	if s.seq != nil {
		s.seq(d)
	}
	if s.name != nil {
		s.name(d)
	} else {
		d.str(0x0010, 0x0010, "PN", "SMITH^J")
	}
	d.str(0x0020, 0x000E, "UI", "2.25.7")
	d.str(0x0020, 0x0032, "DS", `-10\-20\-30`)
	d.str(0x0020, 0x0037, "DS", `1\0\0\0\1\0`)
	d.us(0x0028, 0x0002, 1)
	d.us(0x0028, 0x0010, s.rows)
	d.us(0x0028, 0x0011, s.cols)
	d.str(0x0028, 0x0030, "DS", `0.7\0.7`)
	d.us(0x0028, 0x0100, 16)
	d.us(0x0028, 0x0103, 1)
	if s.pixel != nil {
		s.pixel(d)
	} else {
		d.el(0x7FE0, 0x0010, "OW", make([]byte, 2*s.rows*s.cols))
	}
	b := d.b.Bytes()
	if s.edit != nil {
		b = s.edit(d, b)
	}
	return d, b
}

// refSeq writes a Referenced Image Sequence: of undefined length with an item of undefined
// length (inner written inside it), then a sequence of defined length with a defined item.
func refSeq(inner func(*dcmWriter)) func(*dcmWriter) {
	return func(d *dcmWriter) {
		d.hdr(0x0008, 0x1140, "SQ", undefined)
		d.item(undefined)
		d.str(0x0008, 0x1150, "UI", "1.2.840.10008.5.1.4.1.1.2")
		if inner != nil {
			inner(d)
		}
		d.itemEnd()
		d.seqEnd()
		var item dcmWriter
		item.implicit = d.implicit
		item.str(0x0008, 0x0100, "SH", "121311")
		item.str(0x0008, 0x0102, "SH", "DCM")
		d.hdr(0x0008, 0x1032, "SQ", uint32(item.b.Len()+8))
		d.item(uint32(item.b.Len()))
		d.b.Write(item.b.Bytes())
	}
}

func TestGuard(t *testing.T) {
	const corrupt = ": the file is truncated or corrupt"
	cases := []struct {
		name string
		spec sliceSpec
		// want is the guard's message (whole, after the "read slice <path>: " prefix), from the
		// writer and the file size; "" for a file the guard accepts.
		want func(d *dcmWriter, size int) string
		// after the guard: the error the reader gives for a file the guard accepts
		is  error
		msg string
	}{
		{name: "valid explicit", spec: sliceSpec{}},
		{name: "valid implicit", spec: sliceSpec{implicit: true}},
		{name: "valid nested sequences explicit", spec: sliceSpec{seq: refSeq(nil)}},
		{name: "valid nested sequences implicit", spec: sliceSpec{implicit: true, seq: refSeq(refSeq(nil))}},
		{name: "valid header longer than the first read", spec: sliceSpec{private: 40000, rows: 64, cols: 64}},
		{
			name: "valid encapsulated pixel data", is: dicomio.ErrUnsupported, msg: "encapsulated (compressed) pixel data",
			spec: sliceSpec{pixel: func(d *dcmWriter) {
				d.hdr(0x7FE0, 0x0010, "OB", undefined).item(0).item(4)
				d.b.WriteString("JPEG")
				d.seqEnd()
			}},
		},
		{
			name: "huge length on a normal element implicit",
			spec: sliceSpec{implicit: true, name: func(d *dcmWriter) {
				d.lie(0x0010, 0x0010, "PN", 0xFFFFFFF0)
				d.b.WriteString("SMITH^J ")
			}},
			want: func(d *dcmWriter, size int) string {
				return fmt.Sprintf("element (0010,0010) declares 4294967280 bytes but only %d remain", size-d.value)
			},
		},
		{
			name: "huge length on a normal element explicit UT",
			spec: sliceSpec{name: func(d *dcmWriter) {
				d.lie(0x0010, 0x4000, "UT", 0xFFFFFFF0)
				d.b.WriteString("comment ")
			}},
			want: func(d *dcmWriter, size int) string {
				return fmt.Sprintf("element (0010,4000) declares 4294967280 bytes but only %d remain", size-d.value)
			},
		},
		{
			// the library reads a 2-byte 0xFFFF as undefined length and would allocate 4 GiB
			name: "explicit short length 0xFFFF",
			spec: sliceSpec{name: func(d *dcmWriter) { d.hdr(0x0010, 0x0030, "DA", 0xFFFF) }},
			want: func(*dcmWriter, int) string { return "element (0010,0030) (VR DA) has undefined length" },
		},
		{
			name: "undefined length on a string implicit",
			spec: sliceSpec{implicit: true, name: func(d *dcmWriter) { d.hdr(0x0010, 0x0010, "PN", undefined) }},
			want: func(*dcmWriter, int) string { return "element (0010,0010) (VR PN) has undefined length" },
		},
		{
			name: "huge length on pixel data",
			spec: sliceSpec{rows: 512, cols: 512, pixel: func(d *dcmWriter) {
				d.lie(0x7FE0, 0x0010, "OW", 0xFFFFFFF0)
				d.b.Write(make([]byte, 512*512*2))
			}},
			want: func(*dcmWriter, int) string {
				return "element (7FE0,0010) declares 4294967280 bytes but only 524288 remain"
			},
		},
		{
			name: "huge length on pixel data implicit",
			spec: sliceSpec{implicit: true, pixel: func(d *dcmWriter) {
				d.lie(0x7FE0, 0x0010, "OW", 0xFFFFFFF0)
				d.b.Write(make([]byte, 32))
			}},
			want: func(*dcmWriter, int) string {
				return "element (7FE0,0010) declares 4294967280 bytes but only 32 remain"
			},
		},
		{
			name: "huge length inside a sequence item",
			spec: sliceSpec{implicit: true, seq: refSeq(func(d *dcmWriter) {
				d.lie(0x0008, 0x1155, "UI", 0xFFFFFFF0)
				d.b.WriteString("2.25.1\x00")
			})},
			want: func(d *dcmWriter, size int) string {
				return fmt.Sprintf("element (0008,1155) declares 4294967280 bytes but only %d remain", size-d.value)
			},
		},
		{
			name: "item longer than its sequence",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				d.hdr(0x0008, 0x1140, "SQ", 16).item(100).str(0x0008, 0x1150, "UI", "1.2.3")
			}},
			want: func(*dcmWriter, int) string {
				return "element (FFFE,E000) declares 100 bytes but only 8 remain in its sequence or item"
			},
		},
		{
			name: "element longer than its item",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				d.hdr(0x0008, 0x1140, "SQ", 8+14).item(14).hdr(0x0008, 0x1150, "UI", 64)
				d.b.WriteString("1.2.3\x00")
			}},
			want: func(*dcmWriter, int) string {
				return "element (0008,1150) declares 64 bytes but only 6 remain in its sequence or item"
			},
		},
		{
			name: "truncated in pixel data",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte { return b[:len(b)-10] }},
			want: func(*dcmWriter, int) string { return "element (7FE0,0010) declares 32 bytes but only 22 remain" },
		},
		{
			name: "truncated in an element header",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte { return b[:len(b)-32-12+5] }},
			want: func(_ *dcmWriter, size int) string {
				return fmt.Sprintf("element header at byte %d needs 8 bytes but only 5 remain", size-5)
			},
		},
		{
			name: "truncated in the meta header",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte { return b[:150] }},
			want: func(d *dcmWriter, _ int) string {
				n := binary.LittleEndian.Uint32(d.b.Bytes()[140:])
				return fmt.Sprintf("file meta group length (0002,0000) declares %d bytes but only 6 remain", n)
			},
		},
		{
			name: "too short for a preamble",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte { return b[:100] }},
			want: func(*dcmWriter, int) string { return "file is 100 bytes, too short for the 128-byte preamble and DICM" },
		},
		{
			name: "missing DICM",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte { copy(b[128:], "DICN"); return b }},
			want: func(*dcmWriter, int) string { return "no DICM prefix at byte 128 (not a DICOM Part 10 file)" },
		},
		{
			name: "no transfer syntax",
			spec: sliceSpec{edit: func(_ *dcmWriter, b []byte) []byte {
				// (0002,0010) becomes (0002,0011)
				b[bytes.Index(b, []byte("\x02\x00\x10\x00UI"))+2] = 0x11
				return b
			}},
			want: func(*dcmWriter, int) string { return "file meta information has no TransferSyntaxUID (0002,0010)" },
		},
		{
			name: "sequence without delimiter at the end of the file",
			spec: sliceSpec{pixel: func(d *dcmWriter) {
				d.el(0x7FE0, 0x0010, "OW", make([]byte, 32))
				d.hdr(0xFFFA, 0xFFFA, "SQ", undefined).item(0)
			}},
			// after Pixel Data: the header pass and the library never go there
		},
		{
			name: "sequence without delimiter",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				d.hdr(0x0008, 0x1140, "SQ", undefined).item(12)
				d.str(0x0008, 0x1150, "UI", "1.2").mark()
			}},
			want: func(d *dcmWriter, _ int) string {
				return fmt.Sprintf("sequence (0008,1140) holds (0010,0010) at byte %d where an item (FFFE,E000) belongs", d.value)
			},
		},
		{
			name: "sequence without delimiter before the end of the file",
			spec: sliceSpec{
				seq: func(d *dcmWriter) {
					d.hdr(0x0008, 0x1140, "SQ", undefined).item(12)
					d.str(0x0008, 0x1150, "UI", "1.2").mark()
				},
				edit: func(d *dcmWriter, b []byte) []byte { return b[:d.value] },
			},
			want: func(_ *dcmWriter, size int) string {
				return fmt.Sprintf("sequence (0008,1140) of undefined length has no delimiter (FFFE,E0DD) before byte %d", size)
			},
		},
		{
			name: "item without delimiter",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				d.hdr(0x0008, 0x1140, "SQ", undefined).item(undefined)
				d.str(0x0008, 0x1150, "UI", "1.2").mark()
				d.seqEnd()
			}},
			want: func(d *dcmWriter, _ int) string {
				return fmt.Sprintf("item of undefined length ends at byte %d with (FFFE,E0DD), not its delimiter (FFFE,E00D)", d.value)
			},
		},
		{
			name: "encapsulated pixel data without delimiter",
			spec: sliceSpec{pixel: func(d *dcmWriter) {
				d.hdr(0x7FE0, 0x0010, "OB", undefined).item(0).item(4)
				d.b.WriteString("JPEG")
			}},
			want: func(_ *dcmWriter, size int) string {
				return fmt.Sprintf("element (7FE0,0010) of undefined length has no delimiter (FFFE,E0DD) before byte %d", size)
			},
		},
		{
			name: "huge fragment in encapsulated pixel data",
			spec: sliceSpec{pixel: func(d *dcmWriter) {
				d.hdr(0x7FE0, 0x0010, "OB", undefined).item(0).lie(0xFFFE, 0xE000, "", 0xFFFFFFF0)
				d.b.WriteString("JPEG")
				d.seqEnd()
			}},
			want: func(*dcmWriter, int) string {
				return "element (FFFE,E000) declares 4294967280 bytes but only 12 remain"
			},
		},
		{
			name: "delimiter with a length",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				d.hdr(0x0008, 0x1140, "SQ", undefined).item(0).mark().hdr(0xFFFE, 0xE0DD, "", 0xFFFFFFF0)
			}},
			want: func(d *dcmWriter, _ int) string {
				return fmt.Sprintf("delimiter (FFFE,E0DD) at byte %d has length 4294967280, not 0", d.value)
			},
		},
		{
			name: "item outside a sequence",
			spec: sliceSpec{seq: func(d *dcmWriter) { d.mark().item(0) }},
			want: func(d *dcmWriter, _ int) string {
				return fmt.Sprintf("(FFFE,E000) at byte %d outside a sequence", d.value)
			},
		},
		{
			name: "sequences nested too deep",
			spec: sliceSpec{seq: func(d *dcmWriter) {
				for range 40 {
					d.hdr(0x0008, 0x1140, "SQ", undefined).item(undefined)
				}
				for range 40 {
					d.itemEnd().seqEnd()
				}
			}},
			want: func(*dcmWriter, int) string { return "sequences nested deeper than 32" },
		},
		{
			name: "huge length after the first read",
			spec: sliceSpec{private: 40000, name: func(d *dcmWriter) {
				d.lie(0x0010, 0x0010, "UN", 0xFFFFFFF0)
				d.b.WriteString("SMITH^J ")
			}},
			want: func(d *dcmWriter, size int) string {
				return fmt.Sprintf("element (0010,0010) declares 4294967280 bytes but only %d remain", size-d.value)
			},
		},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, b := c.spec.build()
			path := filepath.Join(dir, fmt.Sprintf("case%02d.dcm", i))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			want := ""
			if c.want != nil {
				want = c.want(d, len(b))
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			_, raw, sliceErr := dicomio.ReadSlice(path)
			_, _, headerErr := dicomio.ReadHeader(path)
			checkErr := dicomio.CheckFile(path)
			runtime.ReadMemStats(&m1)
			// what was a 4 GiB allocation is now at most a few copies of the file
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > uint64(4*len(b))+4<<20 {
				t.Errorf("reading a %d-byte file allocated %d bytes", len(b), alloc)
			}
			if want != "" {
				for _, e := range []struct {
					err    error
					prefix string
				}{{sliceErr, "read slice "}, {headerErr, "read header "}, {checkErr, "check "}} {
					if full := e.prefix + path + ": " + want + corrupt; e.err == nil || e.err.Error() != full || !errors.Is(e.err, dicomio.ErrCorrupt) {
						t.Errorf("error\n  %v\nwant\n  %s", e.err, full)
					}
				}
				return
			}
			if checkErr != nil {
				t.Fatalf("guard refused a sound file: %v", checkErr)
			}
			if c.is == nil {
				if sliceErr != nil || headerErr != nil {
					t.Fatalf("read slice: %v; read header: %v", sliceErr, headerErr)
				}
				rows := max(c.spec.rows, 4)
				cols := max(c.spec.cols, 4)
				if len(raw) != 2*rows*cols {
					t.Errorf("pixel data of %d bytes, want %d", len(raw), 2*rows*cols)
				}
				return
			}
			for _, err := range []error{sliceErr, headerErr} {
				if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("error %v, want %v with %q", err, c.is, c.msg)
				}
			}
		})
	}
}

// TestCheckNamesCompressed: a compressed transfer syntax is named, as by the reader.
func TestCheckNamesCompressed(t *testing.T) {
	d := newDCM("1.2.840.10008.1.2.4.92") // JPEG 2000 Part 2, not decoded
	d.el(0x7FE0, 0x0010, "OB", make([]byte, 8))
	err := dicomio.Check(d.b.Bytes())
	if !errors.Is(err, dicomio.ErrUnsupported) || !strings.Contains(err.Error(), "JPEG 2000") {
		t.Errorf("compressed: %v", err)
	}
}

// pydicomFiles holds the real-world test files of Debian's python3-pydicom (2.3.1: 70
// files from many vendors and toolkits, some broken on purpose).
const pydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

// TestGuardOnPydicomFiles: the guard refuses no file that the library reads, apart from
// files that are not DICOM Part 10 (no DICM, no transfer syntax), which this reader refuses
// on purpose; and what it refuses, it says why.
func TestGuardOnPydicomFiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(pydicomFiles, "*.dcm"))
	if len(files) == 0 {
		testenv.Missing(t, "no files in %s (python3-pydicom)", pydicomFiles)
	}
	accepted := 0
	for _, f := range files {
		err := dicomio.CheckFile(f)
		if err == nil || errors.Is(err, dicomio.ErrUnsupported) {
			accepted++
			continue
		}
		if !errors.Is(err, dicomio.ErrCorrupt) {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		notPart10 := strings.Contains(err.Error(), "no DICM prefix") || strings.Contains(err.Error(), "no TransferSyntaxUID")
		if !notPart10 {
			if _, libErr := dicom.ParseFile(f, nil, dicom.SkipPixelData()); libErr == nil {
				t.Errorf("%s: the library reads it, the guard says %v", filepath.Base(f), err)
			}
		}
		t.Logf("%s: %v", filepath.Base(f), err)
	}
	if accepted < len(files)/2 {
		t.Errorf("guard accepted %d of %d files", accepted, len(files))
	}
}
