// Package dicomio reads CT series from DICOM files with ITK semantics
// (../shared/docs/preprocessing-spec.md §2.1): a header-only pass for geometry and slice order,
// then pixel data for only the slices a crop needs. It reads single-frame, uncompressed
// (Explicit or Implicit VR Little Endian) images and names what it cannot read.
package dicomio

import (
	"bufio"
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

// ErrNotCT marks an image whose Modality is present and is not CT: the models are trained on
// CT Hounsfield units, and an MR or PET series would be embedded as nonsense.
var ErrNotCT = errors.New("not a CT image")

// ErrNoPixelData marks an image without a Pixel Data element.
var ErrNoPixelData = errors.New("no pixel data")

// SliceHeader is what the geometry needs from one single-frame slice.
type SliceHeader struct {
	Path              string // file, when read from disk (or planned)
	Index             int    // caller's index (for example the row of the instances table)
	SeriesInstanceUID string
	SOPInstanceUID    string
	StudyInstanceUID  string
	StudyDate         string // YYYYMMDD as written
	Modality          string // CT, or "" when the file does not say
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
	// pixel data location within the file, when known; encapsulated: the value holds items
	// (RLE Lossless), not the pixels themselves
	pixelOffset, pixelLength int64
	encapsulated             bool
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
	pp := prefixParse{z: z, br: bufio.NewReaderSize(z, 4096), prefix: int64(len(prefix)), full: int64(len(prefix)) == size}
	p, err := dicom.NewParser(pp.br, size, nil, dicom.SkipPixelData())
	if err != nil || pp.consumed() > pp.prefix {
		if !pp.full {
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
	return pp.dataset(p, ts)
}

// prefixParse is one parse of a prefix served with a zero tail: it tells what the parser
// took from real bytes and what from the zeros.
type prefixParse struct {
	z      *zeroTail
	br     *bufio.Reader
	prefix int64 // bytes of real data
	full   bool  // the prefix is the whole object
}

// consumed is the parser's offset in the object.
func (pp *prefixParse) consumed() int64 { return pp.z.off - int64(pp.br.Buffered()) }

// dataset reads the dataset's elements up to Pixel Data.
func (pp *prefixParse) dataset(p *dicom.Parser, ts string) (SliceHeader, bool, error) {
	var elems []*dicom.Element
	for {
		start := pp.consumed()
		e, err := p.Next()
		if err != nil {
			return pp.end(elems, ts, err)
		}
		if e.Tag == tag.PixelData {
			return pp.pixelData(elems, ts, e, start)
		}
		if pp.consumed() > pp.prefix {
			return SliceHeader{}, false, nil
		}
		elems = append(elems, e)
	}
}

// end handles a dataset that ends (or breaks) before Pixel Data.
func (pp *prefixParse) end(elems []*dicom.Element, ts string, err error) (SliceHeader, bool, error) {
	if !pp.full {
		return SliceHeader{}, false, nil
	}
	if !errors.Is(err, dicom.ErrorEndOfDICOM) && !errors.Is(err, io.EOF) {
		return SliceHeader{}, true, fmt.Errorf("parse: %w", err)
	}
	h, err := headerFrom(elems, ts)
	if err != nil {
		return h, true, err
	}
	return h, true, ErrNoPixelData
}

// pixelData builds the header from elems and locates the pixel data element e, whose header
// starts at byte start.
func (pp *prefixParse) pixelData(elems []*dicom.Element, ts string, e *dicom.Element, start int64) (SliceHeader, bool, error) {
	// the element header (at most 12 bytes) must be real bytes; its value need not be
	if start+12 > pp.prefix && !pp.full {
		return SliceHeader{}, false, nil
	}
	h, err := headerFrom(elems, ts)
	if err != nil {
		return h, true, err
	}
	if info, ok := e.Value.GetValue().(dicom.PixelDataInfo); ok && info.IsEncapsulated {
		if !decodesEncapsulated(ts) {
			return h, true, fmt.Errorf("encapsulated (compressed) pixel data: %w", ErrUnsupported)
		}
		// explicit VR: tag, VR, two reserved bytes and the undefined length, then the items
		// up to the end of the element, which the parser has skipped
		h.encapsulated = true
		h.pixelOffset = start + 12
		h.pixelLength = pp.consumed() - h.pixelOffset
		return h, true, nil
	}
	if decodesEncapsulated(ts) {
		return h, true, fmt.Errorf("transfer syntax %s with native (not encapsulated) pixel data: %w", ts, ErrCorrupt)
	}
	h.pixelLength = int64(e.ValueLength)
	h.pixelOffset = pp.consumed() - h.pixelLength
	return h, true, nil
}

// checkTransferSyntax accepts the two uncompressed little-endian syntaxes and the compressed
// ones dicomio decodes, and names the rest.
func checkTransferSyntax(ts string) error {
	if decodesEncapsulated(ts) {
		return nil
	}
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
	e := make(elements, len(elems))
	for _, el := range elems {
		e[el.Tag] = el
	}
	if err := e.identity(&h); err != nil {
		return h, err
	}
	if err := e.geometry(&h); err != nil {
		return h, err
	}
	if err := e.rescale(&h); err != nil {
		return h, err
	}
	return h, e.encoding(&h)
}

// elements indexes a header's top-level elements by tag.
type elements map[tag.Tag]*dicom.Element

func (e elements) str(t tag.Tag) string { return firstString(e[t]) }

// floats reads a decimal-string element of exactly len(dst) values into dst. An absent
// element is an error when required, else leaves dst as it is.
func (e elements) floats(t tag.Tag, name string, dst []float64, required bool) error {
	el := e[t]
	if el == nil {
		if required {
			return fmt.Errorf("missing %s", name)
		}
		return nil
	}
	vals, ok := el.Value.GetValue().([]string)
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

// int reads the first value of an integer element; ok is false when it is absent.
func (e elements) int(t tag.Tag) (int, bool) {
	el := e[t]
	if el == nil {
		return 0, false
	}
	if v, ok := el.Value.GetValue().([]int); ok && len(v) > 0 {
		return v[0], true
	}
	return 0, false
}

// identity reads the UIDs, study, modality and instance number, and refuses a multi-frame
// object and one whose Modality is not CT.
func (e elements) identity(h *SliceHeader) error {
	h.SeriesInstanceUID = e.str(tag.SeriesInstanceUID)
	h.SOPInstanceUID = e.str(tag.SOPInstanceUID)
	h.StudyInstanceUID = e.str(tag.StudyInstanceUID)
	h.StudyDate = e.str(tag.StudyDate)
	h.Modality = e.str(tag.Modality)
	if h.Modality != "" && h.Modality != "CT" {
		return fmt.Errorf("Modality %s: %w", h.Modality, ErrNotCT)
	}
	if s := e.str(tag.InstanceNumber); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			h.InstanceNumber = n
		}
	}
	if s := e.str(tag.NumberOfFrames); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 1 {
			return fmt.Errorf("multi-frame object (%d frames): %w", n, ErrUnsupported)
		}
	}
	return nil
}

// geometry reads the Image Plane module: position, orientation and pixel spacing.
func (e elements) geometry(h *SliceHeader) error {
	if err := e.floats(tag.ImagePositionPatient, "ImagePositionPatient", h.IPP[:], true); err != nil {
		return err
	}
	if err := e.floats(tag.ImageOrientationPatient, "ImageOrientationPatient", h.IOP[:], true); err != nil {
		return err
	}
	return e.floats(tag.PixelSpacing, "PixelSpacing", h.PixelSpacing[:], true)
}

// rescale reads RescaleSlope and RescaleIntercept, each optional (slope 1, intercept 0).
func (e elements) rescale(h *SliceHeader) error {
	v := []float64{h.Slope, h.Intercept}
	if err := e.floats(tag.RescaleSlope, "RescaleSlope", v[:1], false); err != nil {
		return err
	}
	if err := e.floats(tag.RescaleIntercept, "RescaleIntercept", v[1:], false); err != nil {
		return err
	}
	h.Slope, h.Intercept = v[0], v[1]
	return nil
}

// encoding reads the Image Pixel module and refuses what the pixel reader cannot decode.
func (e elements) encoding(h *SliceHeader) error {
	var ok bool
	if h.Rows, ok = e.int(tag.Rows); !ok || h.Rows <= 0 {
		return errors.New("missing or bad Rows")
	}
	if h.Columns, ok = e.int(tag.Columns); !ok || h.Columns <= 0 {
		return errors.New("missing or bad Columns")
	}
	if h.BitsAllocated, ok = e.int(tag.BitsAllocated); !ok {
		return errors.New("missing BitsAllocated")
	}
	if h.BitsAllocated != 16 && h.BitsAllocated != 8 {
		return fmt.Errorf("BitsAllocated %d: %w", h.BitsAllocated, ErrUnsupported)
	}
	h.PixelRepresentation, _ = e.int(tag.PixelRepresentation)
	if v, ok := e.int(tag.SamplesPerPixel); ok {
		h.SamplesPerPixel = v
	}
	if h.SamplesPerPixel != 1 {
		return fmt.Errorf("SamplesPerPixel %d: %w", h.SamplesPerPixel, ErrUnsupported)
	}
	return nil
}
