package dicomio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// ErrCorrupt marks a file whose element structure cannot be right: a length that runs past
// the end of the file or of its enclosing sequence, a missing delimiter, no DICM prefix.
var ErrCorrupt = errors.New("the file is truncated or corrupt")

// The guard exists because suyashkumar/dicom v1.1.0 allocates an element's declared length
// before it reads the value (readBytes, ReadString, readRawItem): one corrupt length field
// of 0xFFFFFFF0 costs a 4 GiB allocation. The guard walks the element headers the way the
// library will (same VR and length rules, same item and delimiter handling), skips values by
// offset arithmetic and rejects any length that does not fit in what remains of the file or
// of the enclosing defined-length sequence or item. After it passes, every allocation the
// library makes from a length is bounded by the file size. Like the header pass, it stops at
// the top-level Pixel Data element: the library is never asked to read past it.

// maxDepth bounds sequence nesting: CT headers nest a few levels; a corrupt file can nest
// thousands of 20-byte sequences, and the library recurses once per level.
const maxDepth = 32

// maxUIDValue bounds the TransferSyntaxUID value the guard reads (a UID is at most 64 bytes).
const maxUIDValue = 256

// errIncomplete says that the guard needs bytes beyond the prefix it was given.
var errIncomplete = errors.New("element header beyond the bytes read")

// checkPrefix runs the guard on the first bytes of a file of size bytes. complete is false
// when the guard needs bytes beyond prefix (the caller reads more and retries). A transfer
// syntax the reader does not support passes: checkTransferSyntax names it after the meta
// header, before the library reads any dataset element.
func checkPrefix(prefix []byte, size int64) (complete bool, err error) {
	w := &walker{src: source{buf: prefix, size: size}}
	err = w.file()
	if errors.Is(err, errIncomplete) {
		return false, nil
	}
	return true, err
}

// Guard runs the guard on a whole object in memory, before any other reader of DICOM (the SR
// reader, say) hands it to the library. Errors wrap ErrCorrupt.
func Guard(b []byte) error {
	_, err := guardWhole(b)
	return err
}

// guardWhole runs the guard on a whole object and returns its walker (which holds the
// transfer syntax it read).
func guardWhole(b []byte) (*walker, error) {
	w := &walker{src: source{buf: b, size: int64(len(b))}}
	return w, w.file()
}

// source serves byte ranges of a file from buf, its first bytes (all of them, or a prefix).
type source struct {
	buf  []byte
	size int64 // of the whole file
}

// at returns the n bytes at off, which the caller has checked lie inside the file, or
// errIncomplete when they lie beyond buf.
func (s *source) at(off, n int64) ([]byte, error) {
	if off+n > int64(len(s.buf)) {
		return nil, errIncomplete
	}
	return s.buf[off : off+n], nil
}

type walker struct {
	src      source
	implicit bool
	ts       string // TransferSyntaxUID as checkTransferSyntax sees it
}

// header is one element header as the library reads it.
type header struct {
	tag       tag.Tag
	vr        string
	vl        uint32
	undefined bool
	value     int64 // offset of the value
}

func tagString(t tag.Tag) string { return fmt.Sprintf("(%04X,%04X)", t.Group, t.Element) }

func corruptf(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), ErrCorrupt)
}

// need returns the n bytes at off, which must end by end (the file or the enclosing container).
func (w *walker) need(off, n, end int64, what string) ([]byte, error) {
	if off+n > end {
		if end == w.src.size {
			return nil, corruptf("%s at byte %d needs %d bytes but only %d remain", what, off, n, end-off)
		}
		return nil, corruptf("%s at byte %d needs %d bytes but only %d remain in its sequence or item", what, off, n, end-off)
	}
	return w.src.at(off, n)
}

// longVL lists the explicit VRs with a 2-byte reserved field and a 4-byte length, as the
// library reads them (it does not know OV, SV, UV: neither does the guard).
func longVL(vr string) bool {
	switch vr {
	case "NA", "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
		return true
	}
	return false
}

// implicitVR is the library's VR for a tag in an implicit-VR dataset.
func implicitVR(t tag.Tag) string {
	if t == tag.PixelData || t == tag.OverlayData {
		return "OW"
	}
	if info, err := tag.Find(t); err == nil {
		return info.VRs[0]
	}
	return tag.UnknownVR
}

// header reads the element header at off. Items and delimiters are always implicit.
func (w *walker) header(off, end int64, implicit bool) (header, error) {
	b, err := w.need(off, 8, end, "element header")
	if err != nil {
		return header{}, err
	}
	h := header{tag: tag.Tag{Group: binary.LittleEndian.Uint16(b), Element: binary.LittleEndian.Uint16(b[2:])}}
	switch {
	case h.tag.Group == 0xFFFE:
		// items and delimiters: tag and a 4-byte length; the library reads the delimiters of
		// an explicit dataset as a 2-byte VR and a 2-byte length, which agree when both are 0
		if h.tag != tag.Item && h.tag != tag.ItemDelimitationItem && h.tag != tag.SequenceDelimitationItem {
			return h, corruptf("unknown item tag %s at byte %d", tagString(h.tag), off)
		}
		h.vr, h.vl, h.value = "NA", binary.LittleEndian.Uint32(b[4:]), off+8
		if h.tag != tag.Item && h.vl != 0 {
			return h, corruptf("delimiter %s at byte %d has length %d, not 0", tagString(h.tag), off, h.vl)
		}
	case implicit:
		h.vr, h.vl, h.value = implicitVR(h.tag), binary.LittleEndian.Uint32(b[4:]), off+8
	default:
		h.vr = vrOf(b[4:6])
		if !isVR(h.vr) {
			return h, corruptf("element %s at byte %d has VR bytes %q", tagString(h.tag), off, h.vr)
		}
		if longVL(h.vr) {
			b, err = w.need(off, 12, end, "element header")
			if err != nil {
				return h, err
			}
			h.vl, h.value = binary.LittleEndian.Uint32(b[8:]), off+12
		} else {
			h.vl, h.value = uint32(binary.LittleEndian.Uint16(b[6:])), off+8
			if h.vl == 0xFFFF {
				// the library reads a 2-byte 0xFFFF as undefined length
				h.vl = tag.VLUndefinedLength
			}
		}
	}
	h.undefined = h.vl == tag.VLUndefinedLength
	return h, nil
}

// knownVRs lists the VRs in pairs: vrOf returns slices of it rather than a new string per
// element (the guard then allocates next to nothing).
const knownVRs = "AEASATCSDADSDTFDFLISLOLTNAOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV"

func vrOf(b []byte) string {
	for i := 0; i < len(knownVRs); i += 2 {
		if knownVRs[i] == b[0] && knownVRs[i+1] == b[1] {
			return knownVRs[i : i+2]
		}
	}
	return string(b)
}

// isVR accepts two upper-case letters: whatever else is in the VR field is corruption (and
// the library would decode it through the character set, which the guard does not mirror).
func isVR(vr string) bool {
	return len(vr) == 2 && vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z'
}

// fits checks a defined length against the end of the file or the enclosing container.
func (w *walker) fits(h header, end int64) error {
	if int64(h.vl) <= end-h.value {
		return nil
	}
	where := ""
	if end != w.src.size {
		where = " in its sequence or item"
	}
	return corruptf("element %s declares %d bytes but only %d remain%s", tagString(h.tag), h.vl, max(end-h.value, 0), where)
}

// file walks preamble, meta header and dataset.
func (w *walker) file() error {
	size := w.src.size
	if size < 132 {
		return corruptf("file is %d bytes, too short for the 128-byte preamble and DICM", size)
	}
	b, err := w.src.at(128, 4)
	if err != nil {
		return err
	}
	if string(b) != "DICM" {
		return corruptf("no DICM prefix at byte 128 (not a DICOM Part 10 file)")
	}
	metaEnd, tsElem, err := w.fileMeta()
	if err != nil {
		return err
	}
	lib, err := w.transferSyntax(tsElem)
	if err != nil {
		return err
	}
	if checkTransferSyntax(w.ts) != nil {
		// rejected by the caller before the library reads any dataset element
		return nil
	}
	bo, implicit, err := uid.ParseTransferSyntaxUID(lib)
	if err != nil || bo != binary.LittleEndian {
		// the library's reading of the UID differs from ours (stray characters)
		return corruptf("TransferSyntaxUID %q is malformed", lib)
	}
	w.implicit = implicit
	_, err = w.dataset(metaEnd, size, 0, topLevel, w.implicit)
	return err
}

// fileMeta walks the file meta information after DICM and returns where it ends and the
// header of its TransferSyntaxUID element.
func (w *walker) fileMeta() (end int64, ts header, err error) {
	size := w.src.size
	h, err := w.header(132, size, false)
	if err != nil {
		return 0, ts, err
	}
	if h.tag != tag.FileMetaInformationGroupLength || h.vr != "UL" || h.vl != 4 {
		return 0, ts, corruptf("file meta information starts with %s %s of %d bytes, not its group length (0002,0000) UL",
			tagString(h.tag), h.vr, h.vl)
	}
	b, err := w.need(h.value, 4, size, "file meta group length")
	if err != nil {
		return 0, ts, err
	}
	metaLen := int64(binary.LittleEndian.Uint32(b))
	end = h.value + 4 + metaLen
	if end > size {
		return 0, ts, corruptf("file meta group length (0002,0000) declares %d bytes but only %d remain", metaLen, size-h.value-4)
	}
	found := false
	for off := h.value + 4; off < end; {
		h, err := w.header(off, end, false)
		if err != nil {
			return 0, ts, err
		}
		if h.tag == tag.TransferSyntaxUID && !found {
			ts, found = h, true
		}
		if off, err = w.element(h, end, 0, false); err != nil {
			return 0, ts, err
		}
	}
	if !found {
		return 0, ts, corruptf("file meta information has no TransferSyntaxUID (0002,0010)")
	}
	return end, ts, nil
}

// transferSyntax reads the TransferSyntaxUID value: lib as the library takes it (trimmed of
// spaces and NULs, first of backslash-separated values), and w.ts as firstString does.
func (w *walker) transferSyntax(h header) (lib string, err error) {
	if h.vr != "UI" || h.undefined || h.vl > maxUIDValue {
		return "", corruptf("TransferSyntaxUID (0002,0010) is %s of %d bytes, not a UI", h.vr, h.vl)
	}
	b, err := w.src.at(h.value, int64(h.vl))
	if err != nil {
		return "", err
	}
	s := string(b)
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) }) >= 0 {
		s = strings.Trim(s, " \x00")
	}
	lib, _, _ = strings.Cut(s, `\`)
	w.ts = strings.TrimRight(strings.TrimSpace(lib), "\x00")
	if w.ts == "" {
		return "", corruptf("TransferSyntaxUID (0002,0010) is empty")
	}
	return lib, nil
}

// element checks the element with header h (inside a container ending at end) and returns
// the offset after it.
func (w *walker) element(h header, end int64, depth int, implicit bool) (int64, error) {
	switch h.tag {
	case tag.Item, tag.ItemDelimitationItem, tag.SequenceDelimitationItem:
		return 0, corruptf("%s at byte %d outside a sequence", tagString(h.tag), h.value-8)
	}
	kind := tag.GetVRKind(h.tag, h.vr)
	if h.undefined {
		switch kind {
		case tag.VRSequence, tag.VRUnknown:
			return w.sequence(h, end, depth+1, implicit)
		case tag.VRPixelData, tag.VRBytes:
			return w.fragments(h, end)
		}
		return 0, corruptf("element %s (VR %s) has undefined length", tagString(h.tag), h.vr)
	}
	if err := w.fits(h, end); err != nil {
		return 0, err
	}
	next := h.value + int64(h.vl)
	if kind == tag.VRSequence {
		return next, w.definedSequence(h, next, depth+1, implicit)
	}
	return next, nil
}

// sequence walks the items of an undefined-length sequence up to its delimiter.
func (w *walker) sequence(sq header, end int64, depth int, implicit bool) (int64, error) {
	if depth > maxDepth {
		return 0, corruptf("sequences nested deeper than %d", maxDepth)
	}
	for off := sq.value; ; {
		if off >= end {
			return 0, corruptf("sequence %s of undefined length has no delimiter (FFFE,E0DD) before byte %d", tagString(sq.tag), end)
		}
		h, err := w.header(off, end, implicit)
		if err != nil {
			return 0, err
		}
		if h.tag == tag.SequenceDelimitationItem {
			return h.value, nil
		}
		if off, err = w.item(sq, h, end, depth, implicit); err != nil {
			return 0, err
		}
	}
}

// definedSequence walks the items of a sequence of defined length, ending at end.
func (w *walker) definedSequence(sq header, end int64, depth int, implicit bool) error {
	if depth > maxDepth {
		return corruptf("sequences nested deeper than %d", maxDepth)
	}
	for off := sq.value; off < end; {
		h, err := w.header(off, end, implicit)
		if err != nil {
			return err
		}
		if off, err = w.item(sq, h, end, depth, implicit); err != nil {
			return err
		}
	}
	return nil
}

// item walks one item (header h) of sequence sq.
func (w *walker) item(sq, h header, end int64, depth int, implicit bool) (int64, error) {
	if h.tag != tag.Item {
		return 0, corruptf("sequence %s holds %s at byte %d where an item (FFFE,E000) belongs", tagString(sq.tag), tagString(h.tag), h.value-8)
	}
	if h.undefined {
		return w.dataset(h.value, end, depth, undefinedItem, implicit)
	}
	if err := w.fits(h, end); err != nil {
		return 0, err
	}
	next := h.value + int64(h.vl)
	_, err := w.dataset(h.value, next, depth, definedItem, implicit)
	return next, err
}

// scope says where a dataset ends.
type scope int

const (
	topLevel      scope = iota // at the end of the file, or after Pixel Data
	definedItem                // at end
	undefinedItem              // after an item delimiter, before end
)

// dataset walks the elements from off and returns the offset after the last.
func (w *walker) dataset(off, end int64, depth int, sc scope, implicit bool) (int64, error) {
	for {
		if off >= end {
			if sc == undefinedItem {
				return 0, corruptf("item of undefined length has no delimiter (FFFE,E00D) before byte %d", end)
			}
			return off, nil
		}
		h, err := w.header(off, end, implicit)
		if err != nil {
			return 0, err
		}
		if sc == undefinedItem {
			switch h.tag {
			case tag.ItemDelimitationItem:
				return h.value, nil
			case tag.SequenceDelimitationItem:
				return 0, corruptf("item of undefined length ends at byte %d with (FFFE,E0DD), not its delimiter (FFFE,E00D)", off)
			}
		}
		if off, err = w.element(h, end, depth, implicit); err != nil {
			return 0, err
		}
		if h.tag == tag.PixelData && sc == topLevel {
			// the header pass stops here, and so does the library
			return off, nil
		}
	}
}

// fragments walks the items of undefined-length OB/OW data (encapsulated pixel data): items
// of defined length up to a sequence delimiter.
func (w *walker) fragments(e header, end int64) (int64, error) {
	for off := e.value; ; {
		if off >= end {
			return 0, corruptf("element %s of undefined length has no delimiter (FFFE,E0DD) before byte %d", tagString(e.tag), end)
		}
		h, err := w.header(off, end, true)
		if err != nil {
			return 0, err
		}
		switch {
		case h.tag == tag.SequenceDelimitationItem:
			return h.value, nil
		case h.tag != tag.Item:
			return 0, corruptf("element %s of undefined length holds %s at byte %d where an item (FFFE,E000) belongs", tagString(e.tag), tagString(h.tag), off)
		case h.undefined:
			return 0, corruptf("fragment of %s at byte %d has undefined length", tagString(e.tag), off)
		}
		if err := w.fits(h, end); err != nil {
			return 0, err
		}
		off = h.value + int64(h.vl)
	}
}
