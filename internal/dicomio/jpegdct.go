package dicomio

import (
	"encoding/binary"
	"fmt"
)

// JPEG Baseline (1.2.840.10008.1.2.4.50, 8-bit) and JPEG Extended (.4.51, 8 or 12 bits; the
// lossy 12-bit CT of 151 NLST series in IDC): the sequential DCT processes of ITU T.81 with
// Huffman coding, one component, decoded in pure Go.
//
// A lossy decoder's output depends on its inverse DCT. The reference is the one pydicom
// decodes these syntaxes with, pylibjpeg-libjpeg (Thomas Richter's libjpeg; GDCM refuses
// 12-bit lossy JPEG in pydicom): an integer LL&M IDCT with 9 fractional bits in the
// constants, the rows of the block first, dequantised coefficients pre-scaled by 4 bits that
// the output stage rounds away, and clamping to the sample range. This file computes the same
// arithmetic, so a slice decodes bit for bit as pydicom decodes it (TestJPEGDCTMatchesPydicom);
// IJG-based decoders (DCMTK, GDCM) differ from it by at most 1 on some samples.

const (
	jpegBaseline = "1.2.840.10008.1.2.4.50"
	jpegExtended = "1.2.840.10008.1.2.4.51"
)

// isSequentialDCTSOF accepts the frame headers of the baseline and extended sequential
// Huffman processes (SOF0, SOF1).
func isSequentialDCTSOF(m byte) bool { return m == 0xC0 || m == 0xC1 }

// zigzag[k] is the natural (row-major) index of the k-th coefficient in coding order.
var zigzag = [64]uint8{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// readDQT reads quantisation tables (8- or 16-bit entries), stored in natural order.
func (f *jpegFrame) readDQT(seg []byte) error {
	for len(seg) > 0 {
		wide, id := seg[0]>>4, seg[0]&15
		n := 64 * (1 + int(wide))
		if wide > 1 || id > 3 || len(seg) < 1+n {
			return fmt.Errorf("JPEG quantisation table %d (precision %d) cut short or invalid: %w", id, wide, ErrCorrupt)
		}
		q := new([64]int32)
		for k := range 64 {
			if wide == 1 {
				q[zigzag[k]] = int32(binary.BigEndian.Uint16(seg[1+2*k:]))
			} else {
				q[zigzag[k]] = int32(seg[1+k])
			}
		}
		f.quant[id] = q
		seg = seg[1+n:]
	}
	return nil
}

// decodeJPEGDCT decodes one sequential-DCT frame of rows×cols samples into native
// little-endian bytes of bitsAllocated bits; signed samples are sign-extended from the
// frame's precision, as for JPEG Lossless.
func decodeJPEGDCT(data []byte, rows, cols, bitsAllocated int, signed bool) ([]byte, error) {
	if bitsAllocated != 8 && bitsAllocated != 16 {
		return nil, fmt.Errorf("JPEG with %d bits allocated: %w", bitsAllocated, ErrUnsupported)
	}
	f, hdr, entropy, err := readJPEGHeaders(data, rows, cols, isSequentialDCTSOF)
	if err != nil {
		return nil, err
	}
	if f.precision > bitsAllocated {
		return nil, fmt.Errorf("JPEG of %d-bit samples in %d bits allocated: %w", f.precision, bitsAllocated, ErrCorrupt)
	}
	if len(hdr) < 6 || hdr[0] != 1 || hdr[1] != f.component {
		return nil, fmt.Errorf("JPEG scan of other than the frame's one component: %w", ErrUnsupported)
	}
	if ss, se, a := hdr[3], hdr[4], hdr[5]; ss != 0 || se != 63 || a != 0 {
		return nil, fmt.Errorf("JPEG sequential scan with spectral selection %d..%d, approximation %#x: %w", ss, se, a, ErrCorrupt)
	}
	dc, ac := &f.dc[hdr[2]>>4&3], &f.ac[hdr[2]&3]
	q := f.quant[f.quantTable&3]
	switch {
	case !dc.ok || !ac.ok:
		return nil, fmt.Errorf("JPEG scan uses Huffman tables DC %d / AC %d, not both defined: %w", hdr[2]>>4, hdr[2]&15, ErrCorrupt)
	case f.quantTable > 3 || q == nil:
		return nil, fmt.Errorf("JPEG component uses quantisation table %d, which is not defined: %w", f.quantTable, ErrCorrupt)
	}
	var idct richterIDCT
	idct.init(q, f.precision)

	bw, bh := (cols+7)/8, (rows+7)/8
	out := make([]byte, rows*cols*bitsAllocated/8)
	maxval := int32(1)<<f.precision - 1
	br := bitReader{data: entropy}
	var coef [64]int32
	var pixels [64]int32
	pred := int32(0)
	for blk := range bw * bh {
		if f.restart > 0 && blk > 0 && blk%f.restart == 0 {
			if err := br.restart(blk / f.restart); err != nil {
				return nil, err
			}
			pred = 0
		}
		bx, by := blk%bw, blk/bw
		if err := br.block(dc, ac, &coef, &pred); err != nil {
			return nil, fmt.Errorf("JPEG block (%d, %d): %w", bx, by, err)
		}
		idct.inverse(&coef, &pixels)
		for y := range min(8, rows-8*by) {
			for x := range min(8, cols-8*bx) {
				// the output stage: round the 4 fractional bits away, clamp to the range
				v := (pixels[8*y+x] + 8) >> 4
				v = max(0, min(v, maxval))
				putSample(out, (8*by+y)*cols+8*bx+x, int(v), f.precision, bitsAllocated, signed)
			}
		}
	}
	if br.overrun*8 > int(br.n) {
		return nil, fmt.Errorf("JPEG entropy-coded data ends before the image does: %w", ErrCorrupt)
	}
	return out, nil
}

// block decodes one 8×8 block's quantised coefficients (T.81 F.2.2) into coef, natural order;
// pred is the component's DC predictor.
func (b *bitReader) block(dc, ac *huffTable, coef *[64]int32, pred *int32) error {
	*coef = [64]int32{}
	s, err := b.decode(dc)
	if err != nil {
		return err
	}
	if s > 15 {
		return fmt.Errorf("JPEG DC difference category %d: %w", s, ErrCorrupt)
	}
	*pred += extend(b.bits(uint(s)), s)
	coef[0] = *pred
	for k := 1; k < 64; k++ {
		rs, err := b.decode(ac)
		if err != nil {
			return err
		}
		r, s := rs>>4, rs&15
		if s == 0 {
			if r != 15 {
				return nil // end of block
			}
			k += 15 // sixteen zeros
			continue
		}
		if k += r; k > 63 {
			return fmt.Errorf("JPEG AC coefficients run past the end of the block: %w", ErrCorrupt)
		}
		coef[zigzag[k]] = extend(b.bits(uint(s)), s)
	}
	return nil
}

// extend turns s received bits into the signed value they code (T.81 F.2.2.1).
func extend(v uint32, s int) int32 {
	if s == 0 {
		return 0
	}
	if v < 1<<(s-1) {
		return int32(v) - (1<<s - 1)
	}
	return int32(v)
}

// restart consumes the RSTn marker that ends restart interval n-1 (T.81 F.2.2.5): the bits
// left in the byte before it are padding.
func (b *bitReader) restart(n int) error {
	if b.overrun*8 > int(b.n) {
		return fmt.Errorf("JPEG restart interval %d ends before its data does: %w", n-1, ErrCorrupt)
	}
	b.acc, b.n, b.overrun = 0, 0, 0
	for b.pos+1 < len(b.data) && b.data[b.pos] == 0xFF && b.data[b.pos+1] == 0xFF {
		b.pos++ // fill bytes before the marker
	}
	if b.pos+1 >= len(b.data) || b.data[b.pos] != 0xFF || b.data[b.pos+1] != 0xD0+byte((n-1)%8) {
		return fmt.Errorf("JPEG restart marker RST%d expected at byte %d: %w", (n-1)%8, b.pos, ErrCorrupt)
	}
	b.pos += 2
	return nil
}

// richterFixBits is the number of fractional bits of the IDCT's constants.
const richterFixBits = 9

// richterPreshift scales the dequantised coefficients up; the output stage removes it.
const richterPreshift = 4

// richterIDCT is the inverse DCT of pylibjpeg-libjpeg (see the top of the file), with the
// quantisation table pre-scaled and the level shift folded into the DC term.
type richterIDCT struct {
	quant    [64]int32
	dcOffset int32
}

func (t *richterIDCT) init(q *[64]int32, precision int) {
	for i, v := range q {
		t.quant[i] = v << richterPreshift
	}
	t.dcOffset = int32(1) << (precision - 1) << (richterPreshift + 3)
}

// The LL&M constants with richterFixBits fractional bits: int(x·2^9 + 0.5), as libjpeg
// rounds them (x in the comments).
const (
	fix0541 = 277  // 0.541196100
	fix1847 = 946  // 1.847759065
	fix0765 = 392  // 0.765366865
	fix1175 = 602  // 1.175875602
	fix0298 = 153  // 0.298631336
	fix2053 = 1051 // 2.053119869
	fix3072 = 1573 // 3.072711026
	fix1501 = 769  // 1.501321110
	fix0899 = 461  // 0.899976223
	fix2562 = 1312 // 2.562915447
	fix1961 = 1004 // 1.961570560
	fix0390 = 200  // 0.390180644
)

// idct1D is the one-dimensional LL&M inverse transform of the eight inputs in[0], in[s], …,
// in[7s], the results still scaled by 2^richterFixBits; 32-bit wrap-around as in C.
func idct1D(in0, in1, in2, in3, in4, in5, in6, in7 int32) (o [8]int32) {
	// even part
	z1 := (in2 + in6) * fix0541
	tmp2 := z1 + in6*-fix1847
	tmp3 := z1 + in2*fix0765
	tmp0 := (in0 + in4) << richterFixBits
	tmp1 := (in0 - in4) << richterFixBits
	tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
	tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
	// odd part
	t0, t1, t2, t3 := in7, in5, in3, in1
	z1i, z2i, z3i, z4i := t0+t3, t1+t2, t0+t2, t1+t3
	z5 := (z3i + z4i) * fix1175
	tmp0 = t0 * fix0298
	tmp1 = t1 * fix2053
	tmp2 = t2 * fix3072
	tmp3 = t3 * fix1501
	z1 = z1i * -fix0899
	z2 := z2i * -fix2562
	z3 := z3i*-fix1961 + z5
	z4 := z4i*-fix0390 + z5
	tmp0 += z1 + z3
	tmp1 += z2 + z4
	tmp2 += z2 + z3
	tmp3 += z1 + z4
	return [8]int32{tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
		tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3}
}

// inverse transforms one block of quantised coefficients (natural order) into samples with
// richterPreshift fractional bits, level shift included: rows first, rounded back to integers
// between the passes, then columns, rounded with the transform's factor of 8.
func (t *richterIDCT) inverse(coef, out *[64]int32) {
	var ws [64]int32
	const toInter, toInt = richterFixBits, richterFixBits + 3
	for r := range 8 {
		c, q := coef[8*r:8*r+8], t.quant[8*r:8*r+8]
		dc := c[0] * q[0]
		if r == 0 {
			dc += t.dcOffset
		}
		o := idct1D(dc, c[1]*q[1], c[2]*q[2], c[3]*q[3], c[4]*q[4], c[5]*q[5], c[6]*q[6], c[7]*q[7])
		for x, v := range o {
			ws[8*r+x] = (v + 1<<(toInter-1)) >> toInter
		}
	}
	for x := range 8 {
		o := idct1D(ws[x], ws[8+x], ws[16+x], ws[24+x], ws[32+x], ws[40+x], ws[48+x], ws[56+x])
		for y, v := range o {
			out[8*y+x] = (v + 1<<(toInt-1)) >> toInt
		}
	}
}
