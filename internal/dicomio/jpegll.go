package dicomio

import (
	"encoding/binary"
	"fmt"
)

// JPEG Lossless (ITU T.81 Annex H, process 14): the transfer syntaxes 1.2.840.10008.1.2.4.70
// (selection value 1, which 14 NLST CT series in IDC use) and .57 (any selection value), one
// component, Huffman coded, decoded in pure Go. Restart intervals are refused (the DICOM
// toolkits do not write them for lossless), as are DNL lines and every other process.

const (
	jpegLosslessSV1 = "1.2.840.10008.1.2.4.70"
	jpegLossless    = "1.2.840.10008.1.2.4.57"
)

// huffTable is one lossless (DC-class) table in the decoding form of T.81 F.2.2.3.
type huffTable struct {
	maxcode [18]int32 // -1: no code of that length
	valptr  [17]int32
	mincode [17]int32
	vals    []byte
	ok      bool
	// lookahead decodes codes of up to lookaheadBits bits at once, indexed by the next
	// lookaheadBits bits of the stream: length<<8 | value, 0 where the code is longer.
	lookahead [1 << lookaheadBits]uint16
}

const lookaheadBits = 8

func newHuffTable(counts []byte, vals []byte) (huffTable, error) {
	var h huffTable
	h.vals = vals
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		if n == 0 {
			h.maxcode[l] = -1
		} else {
			h.valptr[l], h.mincode[l] = k, code
			code += n
			k += n
			h.maxcode[l] = code - 1
		}
		if code > 1<<l {
			return h, fmt.Errorf("JPEG Huffman table with more codes of %d bits than fit: %w", l, ErrCorrupt)
		}
		code <<= 1
	}
	h.maxcode[17] = 1 << 30 // stops the search
	code = 0
	for l, k := 1, 0; l <= lookaheadBits; l++ {
		for range counts[l-1] {
			// every lookahead index that starts with this code of l bits
			first := int(code) << (lookaheadBits - l)
			for i := range 1 << (lookaheadBits - l) {
				h.lookahead[first+i] = uint16(l)<<8 | uint16(vals[k])
			}
			code++
			k++
		}
		code <<= 1
	}
	h.ok = true
	return h, nil
}

// bitReader reads the entropy-coded segment: a 0xFF byte is followed by a stuffed 0x00; any
// other marker ends the data, after which it serves 1 bits (T.81 F.2.2.5), counted as overrun.
type bitReader struct {
	data    []byte
	pos     int
	acc     uint32
	n       uint
	overrun int
}

func (b *bitReader) fill() {
	for b.n <= 24 {
		var c byte = 0xFF
		switch {
		case b.pos < len(b.data) && b.data[b.pos] != 0xFF:
			c = b.data[b.pos]
			b.pos++
		case b.pos+1 < len(b.data) && b.data[b.pos+1] == 0x00:
			b.pos += 2
		default:
			b.overrun++
		}
		b.acc |= uint32(c) << (24 - b.n)
		b.n += 8
	}
}

func (b *bitReader) bits(k uint) uint32 {
	if k == 0 {
		return 0
	}
	if b.n < k {
		b.fill()
	}
	v := b.acc >> (32 - k)
	b.acc <<= k
	b.n -= k
	return v
}

// peek returns the next k (≤ 24) bits without taking them.
func (b *bitReader) peek(k uint) uint32 {
	if b.n < k {
		b.fill()
	}
	return b.acc >> (32 - k)
}

func (b *bitReader) decode(h *huffTable) (int, error) {
	if e := h.lookahead[b.peek(lookaheadBits)]; e != 0 {
		b.bits(uint(e >> 8))
		return int(e & 0xFF), nil
	}
	code := int32(b.bits(1))
	l := 1
	for code > h.maxcode[l] {
		code = code<<1 | int32(b.bits(1))
		if l++; l > 16 {
			return 0, fmt.Errorf("JPEG Huffman code longer than 16 bits: %w", ErrCorrupt)
		}
	}
	i := h.valptr[l] + code - h.mincode[l]
	if int(i) >= len(h.vals) {
		return 0, fmt.Errorf("JPEG Huffman code outside its table: %w", ErrCorrupt)
	}
	return int(h.vals[i]), nil
}

// difference reads one coded difference (T.81 H.1.2.2): its category, then that many bits.
func (b *bitReader) difference(h *huffTable) (int, error) {
	s, err := b.decode(h)
	switch {
	case err != nil:
		return 0, err
	case s == 16:
		return 32768, nil
	case s > 16:
		return 0, fmt.Errorf("JPEG difference category %d: %w", s, ErrCorrupt)
	case s == 0:
		return 0, nil
	}
	v := int(b.bits(uint(s)))
	if v < 1<<(s-1) {
		v -= 1<<s - 1
	}
	return v, nil
}

// jpegFrame is what the markers before the scan say: the frame header of the one component,
// the Huffman tables of both classes, and (DCT processes, jpegdct.go) the quantisation tables.
type jpegFrame struct {
	sof                   byte // the SOFn marker
	precision, rows, cols int
	component             byte
	quantTable            byte // the component's Tq
	dc, ac                [4]huffTable
	quant                 [4]*[64]int32 // natural (not zig-zag) order
	restart               int
}

// decodeJPEGLossless decodes one frame of rows×cols samples into native little-endian bytes
// of bitsAllocated bits (8 or 16), as uncompressed Pixel Data stores them. signed samples of
// fewer bits than allocated are sign-extended from the frame's precision, as the two's
// complement native data would hold them.
func decodeJPEGLossless(data []byte, rows, cols, bitsAllocated int, signed bool) ([]byte, error) {
	if bitsAllocated != 8 && bitsAllocated != 16 {
		return nil, fmt.Errorf("JPEG Lossless with %d bits allocated: %w", bitsAllocated, ErrUnsupported)
	}
	f, hdr, entropy, err := readJPEGHeaders(data, rows, cols, isLosslessSOF)
	if err != nil {
		return nil, err
	}
	return f.scan(hdr, entropy, bitsAllocated, signed)
}

// isLosslessSOF accepts the frame header of the lossless Huffman process (SOF3).
func isLosslessSOF(m byte) bool { return m == 0xC3 }

// readJPEGHeaders reads the markers up to the scan: the frame they describe, the scan's
// header and the entropy-coded data after it. accept says which SOFn markers start a frame
// this decoder reads; any other process is refused, naming its marker.
func readJPEGHeaders(data []byte, rows, cols int, accept func(sof byte) bool) (f jpegFrame, scanHdr, entropy []byte, err error) {
	scanHdr, entropy, err = jpegScan(data, "JPEG", func(m byte, seg []byte) (bool, error) {
		switch {
		case accept(m):
			f.sof = m
			return true, f.readSOF(seg, rows, cols)
		case m == 0xC4:
			return false, f.readDHT(seg)
		case m == 0xDB:
			return false, f.readDQT(seg)
		case m == 0xDD && len(seg) == 2:
			f.restart = int(binary.BigEndian.Uint16(seg))
		}
		return false, nil
	})
	return f, scanHdr, entropy, err
}

// jpegScan walks the marker segments of a stream of the JPEG family (T.81, and T.87 for
// JPEG-LS) from SOI to the first scan, handing each segment to visit, which reads those of
// its codec and says whether one was the frame header it decodes. It returns the scan's
// header and the entropy-coded data after it. A scan before an accepted frame header is
// corrupt; a frame header of another process (SOFn that visit did not take) is refused.
func jpegScan(data []byte, codec string, visit func(m byte, seg []byte) (frame bool, err error)) (scanHdr, entropy []byte, err error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, nil, fmt.Errorf("%s frame does not start with SOI: %w", codec, ErrCorrupt)
	}
	framed := false
	for p := 2; ; {
		m, seg, next, err := nextMarker(data, p)
		if err != nil {
			return nil, nil, err
		}
		p = next
		if m == 0xDA {
			if !framed {
				return nil, nil, fmt.Errorf("%s scan before its frame header: %w", codec, ErrCorrupt)
			}
			return seg, data[p:], nil
		}
		frame, err := visit(m, seg)
		switch {
		case err != nil:
			return nil, nil, err
		case frame:
			framed = true
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return nil, nil, fmt.Errorf("%s: a frame of marker SOF%d is not the process the transfer syntax declares: %w", codec, m-0xC0, ErrUnsupported)
		}
	}
}

// nextMarker reads the marker segment at byte p (after any fill bytes): the marker, its
// payload and where the next one starts.
func nextMarker(data []byte, p int) (m byte, seg []byte, next int, err error) {
	for p+1 < len(data) && data[p] == 0xFF && data[p+1] == 0xFF {
		p++ // fill bytes
	}
	if p+4 > len(data) || data[p] != 0xFF {
		return 0, nil, 0, fmt.Errorf("JPEG marker expected at byte %d: %w", p, ErrCorrupt)
	}
	m = data[p+1]
	if m == 0xD9 {
		return 0, nil, 0, fmt.Errorf("JPEG stream ends before its scan: %w", ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint16(data[p+2:]))
	if n < 2 || p+2+n > len(data) {
		return 0, nil, 0, fmt.Errorf("JPEG marker %02X with length %d past the end: %w", m, n, ErrCorrupt)
	}
	return m, data[p+4 : p+2+n], p + 2 + n, nil
}

func (f *jpegFrame) readSOF(seg []byte, rows, cols int) error {
	if len(seg) < 9 || seg[5] != 1 {
		return fmt.Errorf("JPEG frame of more than one component: %w", ErrUnsupported)
	}
	f.precision = int(seg[0])
	f.rows, f.cols = int(binary.BigEndian.Uint16(seg[1:])), int(binary.BigEndian.Uint16(seg[3:]))
	f.component, f.quantTable = seg[6], seg[8]
	lo, hi := 2, 16
	if f.sof != 0xC3 {
		lo, hi = 8, 12 // DCT processes: 8 bits (baseline), 8 or 12 (extended)
	}
	switch {
	case f.precision < lo || f.precision > hi:
		return fmt.Errorf("JPEG precision %d in frame SOF%d: %w", f.precision, f.sof-0xC0, ErrCorrupt)
	case f.rows != rows || f.cols != cols:
		return fmt.Errorf("JPEG frame is %d×%d, the header says %d×%d: %w", f.rows, f.cols, rows, cols, ErrCorrupt)
	}
	return nil
}

func (f *jpegFrame) readDHT(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return fmt.Errorf("JPEG Huffman table cut short: %w", ErrCorrupt)
		}
		class, id := seg[0]>>4, seg[0]&15
		total := 0
		for _, c := range seg[1:17] {
			total += int(c)
		}
		if class > 1 || id > 3 || total > 256 || len(seg) < 17+total {
			return fmt.Errorf("JPEG Huffman table %d/%d of %d values: %w", class, id, total, ErrCorrupt)
		}
		t, err := newHuffTable(seg[1:17], seg[17:17+total])
		if err != nil {
			return err
		}
		if class == 0 {
			f.dc[id] = t
		} else {
			f.ac[id] = t
		}
		seg = seg[17+total:]
	}
	return nil
}

// scan decodes the scan whose header is hdr and whose entropy-coded data starts data.
func (f *jpegFrame) scan(hdr, data []byte, bitsAllocated int, signed bool) ([]byte, error) {
	if len(hdr) < 6 || hdr[0] != 1 || hdr[1] != f.component {
		return nil, fmt.Errorf("JPEG scan of other than the frame's one component: %w", ErrUnsupported)
	}
	table := &f.dc[hdr[2]>>4&3]
	sv, pt := int(hdr[3]), int(hdr[5]&15)
	switch {
	case !table.ok:
		return nil, fmt.Errorf("JPEG scan uses Huffman table %d, which is not defined: %w", hdr[2]>>4, ErrCorrupt)
	case sv < 1 || sv > 7:
		return nil, fmt.Errorf("JPEG Lossless selection value %d: %w", sv, ErrCorrupt)
	case f.restart != 0:
		return nil, fmt.Errorf("JPEG Lossless with restart intervals (%d): %w", f.restart, ErrUnsupported)
	case pt >= f.precision:
		return nil, fmt.Errorf("JPEG point transform %d of %d-bit samples: %w", pt, f.precision, ErrCorrupt)
	}
	rows, cols := f.rows, f.cols
	out := make([]byte, rows*cols*bitsAllocated/8)
	cur, prev := make([]int, cols), make([]int, cols)
	br := bitReader{data: data}
	for y := range rows {
		for x := range cols {
			diff, err := br.difference(table)
			if err != nil {
				return nil, fmt.Errorf("JPEG sample (%d, %d): %w", x, y, err)
			}
			cur[x] = (predict(sv, x, y, cur, prev, f.precision-pt) + diff) & 0xFFFF
			putSample(out, y*cols+x, cur[x]<<pt&0xFFFF, f.precision, bitsAllocated, signed)
		}
		cur, prev = prev, cur
	}
	// The reader fills ahead; only bits it made up and the decoder then took are an error.
	if br.overrun*8 > int(br.n) {
		return nil, fmt.Errorf("JPEG entropy-coded data ends before the image does: %w", ErrCorrupt)
	}
	return out, nil
}

// predict is the prediction of sample x of line y (T.81 H.1.2.1): the first sample of the
// image from the precision, the rest of the first line from the left, the first sample of a
// line from above, the others by the selection value sv.
func predict(sv, x, y int, cur, prev []int, precision int) int {
	switch {
	case x == 0 && y == 0:
		return 1 << (precision - 1)
	case y == 0:
		return cur[x-1]
	case x == 0:
		return prev[0]
	}
	ra, rb, rc := cur[x-1], prev[x], prev[x-1]
	switch sv {
	case 1:
		return ra
	case 2:
		return rb
	case 3:
		return rc
	case 4:
		return ra + rb - rc
	case 5:
		return ra + (rb-rc)>>1
	case 6:
		return rb + (ra-rc)>>1
	}
	return (ra + rb) >> 1
}
