// Package dicomio reads CT series from DICOM files with ITK semantics
// (../shared/docs/preprocessing-spec.md §2.1): a header-only pass for geometry and slice order,
// then pixel data for only the slices a crop needs. It reads single-frame, uncompressed
// (Explicit or Implicit VR Little Endian) images and names what it cannot read.
package dicomio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// ErrUnsupported marks objects this reader cannot use (compressed, multi-frame, ...).
var ErrUnsupported = errors.New("unsupported DICOM object")

// ErrNoPixelData marks an image without a Pixel Data element.
var ErrNoPixelData = errors.New("no pixel data")

// SliceHeader is what the geometry needs from one single-frame slice.
type SliceHeader struct {
	Path              string // file, when read from disk (or planned)
	Index             int    // caller's index (for example the row of the instances table)
	SeriesInstanceUID string
	SOPInstanceUID    string
	InstanceNumber    int
	IPP               [3]float64 // ImagePositionPatient, LPS mm
	IOP               [6]float64 // ImageOrientationPatient
	PixelSpacing      [2]float64 // row spacing, column spacing (DICOM order)
	Rows, Columns     int

	// Pixel encoding (zero when planned from a table).
	TransferSyntax      string
	BitsAllocated       int
	PixelRepresentation int // 0 unsigned, 1 signed
	SamplesPerPixel     int
	Slope, Intercept    float64
	// pixel data location within the file, when known
	pixelOffset, pixelLength int64
}

// headerPrefix is the first read of a header pass: CT headers are a few KiB; the prefix grows
// when an element crosses it.
const headerPrefix = 16 << 10

// ReadHeader reads the header of one file without reading its pixel data: it reads a prefix of
// the file and only grows it when an element before Pixel Data crosses the prefix. It returns
// the bytes it read from disk.
func ReadHeader(path string) (SliceHeader, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return SliceHeader{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SliceHeader{}, 0, err
	}
	h, n, err := readHeaderAt(f, st.Size())
	h.Path = path
	if err != nil {
		return h, n, fmt.Errorf("read header %s: %w", path, err)
	}
	return h, n, nil
}

// ParseHeader is ReadHeader on bytes in memory (for tests and fuzzing).
func ParseHeader(b []byte) (SliceHeader, error) {
	h, _, err := readHeaderAt(bytes.NewReader(b), int64(len(b)))
	return h, err
}

// readHeaderAt parses the header of an object of size bytes, reading as little as it can.
func readHeaderAt(r io.ReaderAt, size int64) (SliceHeader, int64, error) {
	h, _, read, err := readHeaderBuf(r, size)
	return h, read, err
}

// readHeaderBuf is readHeaderAt that also returns the last prefix it read (the file's first
// bytes), so that a pixel read can reuse what the prefix already holds.
func readHeaderBuf(r io.ReaderAt, size int64) (SliceHeader, []byte, int64, error) {
	var read int64
	for prefix := min(int64(headerPrefix), size); ; prefix = min(prefix*4, size) {
		buf := make([]byte, prefix)
		n, err := r.ReadAt(buf, 0)
		read += int64(n)
		if int64(n) < prefix {
			return SliceHeader{}, nil, read, fmt.Errorf("read: %w", err)
		}
		h, complete, err := parseHeaderPrefix(buf, size)
		if complete || prefix == size {
			return h, buf, read, err
		}
	}
}

// zeroTail serves prefix and then zeros up to size, so that the parser can skip over pixel
// data without reading it; whatever the parser took from the zeros is detected and discarded.
type zeroTail struct {
	prefix []byte
	size   int64
	off    int64
}

func (z *zeroTail) Read(p []byte) (int, error) {
	if z.off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-z.off))
	p = p[:n]
	k := 0
	if z.off < int64(len(z.prefix)) {
		k = copy(p, z.prefix[z.off:])
	}
	clear(p[k:])
	z.off += int64(n)
	return n, nil
}

// parseHeaderPrefix parses the elements before Pixel Data from prefix (of an object of size
// bytes). complete is false when an element crosses the prefix: the caller retries larger.
func parseHeaderPrefix(prefix []byte, size int64) (h SliceHeader, complete bool, err error) {
	defer func() {
		// the library panics on some malformed input; that is a bad file, not a crash
		if r := recover(); r != nil {
			h, complete, err = SliceHeader{}, int64(len(prefix)) == size, fmt.Errorf("malformed DICOM: %v", r)
		}
	}()
	// the library allocates declared lengths before reading them: check them first (guard.go)
	if ok, err := checkPrefix(prefix, size); err != nil || !ok {
		return h, ok, err
	}
	z := &zeroTail{prefix: prefix, size: size}
	br := bufio.NewReaderSize(z, 4096)
	consumed := func() int64 { return z.off - int64(br.Buffered()) }
	full := int64(len(prefix)) == size
	p, err := dicom.NewParser(br, size, nil, dicom.SkipPixelData())
	if err != nil || consumed() > int64(len(prefix)) {
		if err == nil && !full {
			return h, false, nil
		}
		if !full {
			return h, false, nil
		}
		return h, true, fmt.Errorf("parse file meta: %w", err)
	}
	ts := ""
	meta := p.GetMetadata()
	if e, err := meta.FindElementByTag(tag.TransferSyntaxUID); err == nil {
		ts = firstString(e)
	}
	if err := checkTransferSyntax(ts); err != nil {
		return h, true, err
	}
	var elems []*dicom.Element
	for {
		start := consumed()
		e, err := p.Next()
		if err != nil {
			if errors.Is(err, dicom.ErrorEndOfDICOM) || errors.Is(err, io.EOF) {
				if !full {
					return h, false, nil
				}
				h, err := headerFrom(elems, ts)
				if err != nil {
					return h, true, err
				}
				return h, true, ErrNoPixelData
			}
			if !full {
				return h, false, nil
			}
			return h, true, fmt.Errorf("parse: %w", err)
		}
		if e.Tag == tag.PixelData {
			// the element header (at most 12 bytes) must be real bytes; its value need not be
			if start+12 > int64(len(prefix)) && !full {
				return h, false, nil
			}
			h, err := headerFrom(elems, ts)
			if err != nil {
				return h, true, err
			}
			if info, ok := e.Value.GetValue().(dicom.PixelDataInfo); ok && info.IsEncapsulated {
				return h, true, fmt.Errorf("encapsulated (compressed) pixel data: %w", ErrUnsupported)
			}
			h.pixelLength = int64(e.ValueLength)
			h.pixelOffset = consumed() - h.pixelLength
			return h, true, nil
		}
		if consumed() > int64(len(prefix)) {
			return h, false, nil
		}
		elems = append(elems, e)
	}
}

// checkTransferSyntax accepts the two uncompressed little-endian syntaxes and names the rest.
func checkTransferSyntax(ts string) error {
	switch ts {
	case uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, "":
		// "" is a file without meta information: the library infers the syntax
		return nil
	}
	name := "unknown transfer syntax"
	if info, err := uid.Lookup(ts); err == nil {
		name = info.Name
	}
	return fmt.Errorf("%s (%s) is not supported: %w", name, ts, ErrUnsupported)
}

func firstString(e *dicom.Element) string {
	if e == nil || e.Value == nil {
		return ""
	}
	if s, ok := e.Value.GetValue().([]string); ok && len(s) > 0 {
		return strings.TrimRight(strings.TrimSpace(s[0]), "\x00")
	}
	return ""
}

// headerFrom extracts the slice header from the top-level elements before Pixel Data.
func headerFrom(elems []*dicom.Element, ts string) (SliceHeader, error) {
	h := SliceHeader{TransferSyntax: ts, Slope: 1, SamplesPerPixel: 1}
	byTag := make(map[tag.Tag]*dicom.Element, len(elems))
	for _, e := range elems {
		byTag[e.Tag] = e
	}
	str := func(t tag.Tag) string { return firstString(byTag[t]) }
	floats := func(t tag.Tag, name string, dst []float64, required bool) error {
		e := byTag[t]
		if e == nil {
			if required {
				return fmt.Errorf("missing %s", name)
			}
			return nil
		}
		vals, ok := e.Value.GetValue().([]string)
		if !ok {
			return fmt.Errorf("%s: not a decimal string", name)
		}
		// multi-valued DS may arrive as one backslash-joined string
		var parts []string
		for _, v := range vals {
			parts = append(parts, strings.Split(v, `\`)...)
		}
		if len(parts) != len(dst) {
			return fmt.Errorf("%s: %d values, want %d", name, len(parts), len(dst))
		}
		for i, s := range parts {
			f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimRight(s, "\x00")), 64)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			dst[i] = f
		}
		return nil
	}
	ints := func(t tag.Tag) (int, bool) {
		e := byTag[t]
		if e == nil {
			return 0, false
		}
		if v, ok := e.Value.GetValue().([]int); ok && len(v) > 0 {
			return v[0], true
		}
		return 0, false
	}
	h.SeriesInstanceUID = str(tag.SeriesInstanceUID)
	h.SOPInstanceUID = str(tag.SOPInstanceUID)
	if s := str(tag.InstanceNumber); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			h.InstanceNumber = n
		}
	}
	if s := str(tag.NumberOfFrames); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 1 {
			return h, fmt.Errorf("multi-frame object (%d frames): %w", n, ErrUnsupported)
		}
	}
	if err := floats(tag.ImagePositionPatient, "ImagePositionPatient", h.IPP[:], true); err != nil {
		return h, err
	}
	if err := floats(tag.ImageOrientationPatient, "ImageOrientationPatient", h.IOP[:], true); err != nil {
		return h, err
	}
	if err := floats(tag.PixelSpacing, "PixelSpacing", h.PixelSpacing[:], true); err != nil {
		return h, err
	}
	var one [1]float64
	if byTag[tag.RescaleSlope] != nil {
		if err := floats(tag.RescaleSlope, "RescaleSlope", one[:], true); err != nil {
			return h, err
		}
		h.Slope = one[0]
	}
	if byTag[tag.RescaleIntercept] != nil {
		if err := floats(tag.RescaleIntercept, "RescaleIntercept", one[:], true); err != nil {
			return h, err
		}
		h.Intercept = one[0]
	}
	var ok bool
	if h.Rows, ok = ints(tag.Rows); !ok || h.Rows <= 0 {
		return h, errors.New("missing or bad Rows")
	}
	if h.Columns, ok = ints(tag.Columns); !ok || h.Columns <= 0 {
		return h, errors.New("missing or bad Columns")
	}
	if h.BitsAllocated, ok = ints(tag.BitsAllocated); !ok {
		return h, errors.New("missing BitsAllocated")
	}
	if h.BitsAllocated != 16 && h.BitsAllocated != 8 {
		return h, fmt.Errorf("BitsAllocated %d: %w", h.BitsAllocated, ErrUnsupported)
	}
	h.PixelRepresentation, _ = ints(tag.PixelRepresentation)
	if v, ok := ints(tag.SamplesPerPixel); ok {
		h.SamplesPerPixel = v
	}
	if h.SamplesPerPixel != 1 {
		return h, fmt.Errorf("SamplesPerPixel %d: %w", h.SamplesPerPixel, ErrUnsupported)
	}
	return h, nil
}
