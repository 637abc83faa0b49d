package dicomio

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// JPEG-LS (ITU-T T.87 | ISO/IEC 14495-1): the transfer syntaxes 1.2.840.10008.1.2.4.80
// (lossless) and .81 (near-lossless, NEAR > 0), one component of 2 to 16 bits, decoded in
// pure Go. Supported: regular and run mode, default coding parameters or those of an LSE
// preset segment (type 1), restart intervals. Refused as unsupported: more than one
// component, mapping tables (LSE types 2 and 3, or a table selected in the scan), oversize
// dimensions (LSE type 4, or a frame of 0 lines), a point transform, and interleaving for the
// single component. Samples are coded as unsigned P-bit values; signed ones are two's
// complement bit patterns, sign-extended here as the native data would hold them.

const (
	jpegLSLossless     = "1.2.840.10008.1.2.4.80"
	jpegLSNearLossless = "1.2.840.10008.1.2.4.81"
)

// jlsJ is the run-length order table J of T.87 A.7.1.2: a run of 1<<J[RUNindex] samples is
// coded by one bit.
var jlsJ = [32]int{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// jlsFrame is what the markers before the scan say.
type jlsFrame struct {
	precision, rows, cols int
	component             byte
	preset                [5]int // MAXVAL, T1, T2, T3, RESET of an LSE segment; 0: the default
	restart               int    // lines per restart interval; 0: none
}

// jlsParams are the coding parameters of the scan (T.87 A.2.1 and C.2.4.1.1).
type jlsParams struct {
	maxval, near, t1, t2, t3, reset int
	rng, qbpp, limit                int // RANGE, qbpp and LIMIT
}

// decodeJPEGLS decodes one frame of rows×cols samples into native little-endian bytes of
// bitsAllocated bits (8 or 16), signed samples sign-extended from the frame's precision.
func decodeJPEGLS(data []byte, rows, cols, bitsAllocated int, signed bool) ([]byte, error) {
	if bitsAllocated != 8 && bitsAllocated != 16 {
		return nil, fmt.Errorf("JPEG-LS with %d bits allocated: %w", bitsAllocated, ErrUnsupported)
	}
	f, scanHdr, entropy, err := readJPEGLSHeaders(data, rows, cols)
	if err != nil {
		return nil, err
	}
	if f.precision > bitsAllocated {
		return nil, fmt.Errorf("JPEG-LS samples of %d bits in %d bits allocated: %w", f.precision, bitsAllocated, ErrCorrupt)
	}
	p, err := f.scanParams(scanHdr)
	if err != nil {
		return nil, err
	}
	samples, err := decodeJPEGLSScan(entropy, f, p)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(samples)*bitsAllocated/8)
	for i, s := range samples {
		putSample(out, i, int(s), f.precision, bitsAllocated, signed)
	}
	return out, nil
}

// readJPEGLSHeaders reads the markers up to the scan: the frame they describe, the scan's
// header and the entropy-coded data after it.
func readJPEGLSHeaders(data []byte, rows, cols int) (f jlsFrame, scanHdr, entropy []byte, err error) {
	scanHdr, entropy, err = jpegScan(data, "JPEG-LS", func(m byte, seg []byte) (bool, error) {
		switch m {
		case 0xF7: // SOF55
			return true, f.readSOF(seg, rows, cols)
		case 0xF8:
			return false, f.readLSE(seg)
		case 0xDD:
			if len(seg) < 2 || len(seg) > 4 {
				return false, fmt.Errorf("JPEG-LS restart interval of %d bytes: %w", len(seg), ErrCorrupt)
			}
			f.restart = 0
			for _, b := range seg {
				f.restart = f.restart<<8 | int(b)
			}
		}
		return false, nil
	})
	return f, scanHdr, entropy, err
}

func (f *jlsFrame) readSOF(seg []byte, rows, cols int) error {
	if len(seg) < 6 {
		return fmt.Errorf("JPEG-LS frame header of %d bytes: %w", len(seg), ErrCorrupt)
	}
	if seg[5] != 1 {
		return fmt.Errorf("JPEG-LS frame of %d components: %w", seg[5], ErrUnsupported)
	}
	if len(seg) < 9 {
		return fmt.Errorf("JPEG-LS frame header of %d bytes: %w", len(seg), ErrCorrupt)
	}
	f.precision = int(seg[0])
	f.rows, f.cols = int(binary.BigEndian.Uint16(seg[1:])), int(binary.BigEndian.Uint16(seg[3:]))
	f.component = seg[6]
	switch {
	case f.precision < 2 || f.precision > 16:
		return fmt.Errorf("JPEG-LS precision %d: %w", f.precision, ErrCorrupt)
	case f.rows == 0:
		// the line count would follow in an LSE type 4 or DNL segment
		return fmt.Errorf("JPEG-LS frame of a line count given later: %w", ErrUnsupported)
	case f.rows != rows || f.cols != cols:
		return fmt.Errorf("JPEG-LS frame is %d×%d, the header says %d×%d: %w", f.rows, f.cols, rows, cols, ErrCorrupt)
	}
	return nil
}

// readLSE reads a preset parameters segment; only type 1 (coding parameters) is decoded.
func (f *jlsFrame) readLSE(seg []byte) error {
	if len(seg) < 1 {
		return fmt.Errorf("JPEG-LS empty LSE segment: %w", ErrCorrupt)
	}
	switch seg[0] {
	case 1:
		if len(seg) < 11 {
			return fmt.Errorf("JPEG-LS preset coding parameters of %d bytes: %w", len(seg), ErrCorrupt)
		}
		for i := range f.preset {
			f.preset[i] = int(binary.BigEndian.Uint16(seg[1+2*i:]))
		}
		return nil
	case 2, 3:
		return fmt.Errorf("JPEG-LS mapping table (LSE type %d): %w", seg[0], ErrUnsupported)
	case 4:
		return fmt.Errorf("JPEG-LS oversize image dimensions (LSE type 4): %w", ErrUnsupported)
	}
	return fmt.Errorf("JPEG-LS LSE segment of type %d: %w", seg[0], ErrCorrupt)
}

// scanParams checks the scan header and derives the coding parameters of the scan.
func (f *jlsFrame) scanParams(hdr []byte) (jlsParams, error) {
	var p jlsParams
	if len(hdr) < 1 || hdr[0] != 1 {
		return p, fmt.Errorf("JPEG-LS scan of other than one component: %w", ErrUnsupported)
	}
	if len(hdr) < 6 {
		return p, fmt.Errorf("JPEG-LS scan header of %d bytes: %w", len(hdr), ErrCorrupt)
	}
	table, near, ilv, pt := hdr[2], int(hdr[3]), hdr[4], hdr[5]&15
	p.maxval = 1<<f.precision - 1
	if mv := f.preset[0]; mv != 0 {
		if mv > p.maxval {
			return p, fmt.Errorf("JPEG-LS MAXVAL %d of %d-bit samples: %w", mv, f.precision, ErrCorrupt)
		}
		p.maxval = mv
	}
	switch {
	case hdr[1] != f.component:
		return p, fmt.Errorf("JPEG-LS scan of component %d, the frame has %d: %w", hdr[1], f.component, ErrCorrupt)
	case table != 0:
		return p, fmt.Errorf("JPEG-LS scan with mapping table %d: %w", table, ErrUnsupported)
	case ilv != 0:
		return p, fmt.Errorf("JPEG-LS interleave mode %d for one component: %w", ilv, ErrUnsupported)
	case pt != 0:
		return p, fmt.Errorf("JPEG-LS point transform %d: %w", pt, ErrUnsupported)
	case near > min(255, p.maxval/2):
		return p, fmt.Errorf("JPEG-LS NEAR %d with MAXVAL %d: %w", near, p.maxval, ErrCorrupt)
	}
	p.near = near
	t1, t2, t3 := jlsDefaultThresholds(p.maxval, near)
	p.t1, p.t2, p.t3, p.reset = t1, t2, t3, 64
	for i, v := range []*int{&p.t1, &p.t2, &p.t3, &p.reset} {
		if f.preset[i+1] != 0 {
			*v = f.preset[i+1]
		}
	}
	if p.t1 < near+1 || p.t2 < p.t1 || p.t3 < p.t2 || p.t3 > p.maxval || p.reset < 3 || p.reset > max(255, p.maxval) {
		return p, fmt.Errorf("JPEG-LS thresholds %d, %d, %d and RESET %d with MAXVAL %d, NEAR %d: %w",
			p.t1, p.t2, p.t3, p.reset, p.maxval, near, ErrCorrupt)
	}
	p.rng = (p.maxval+2*near)/(2*near+1) + 1
	p.qbpp = bits.Len(uint(p.rng - 1))
	bpp := max(2, bits.Len(uint(p.maxval)))
	p.limit = 2 * (bpp + max(8, bpp))
	return p, nil
}

// jlsDefaultThresholds are T1, T2 and T3 of T.87 C.2.4.1.1.1, which scale the 8-bit basic
// thresholds 3, 7 and 21 to MAXVAL and NEAR.
func jlsDefaultThresholds(maxval, near int) (t1, t2, t3 int) {
	clamp := func(v, lo int) int {
		if v > maxval || v < lo {
			return lo
		}
		return v
	}
	if maxval >= 128 {
		factor := (min(maxval, 4095) + 128) / 256
		t1 = clamp(factor*(3-2)+2+3*near, near+1)
		t2 = clamp(factor*(7-3)+3+5*near, t1)
		t3 = clamp(factor*(21-4)+4+7*near, t2)
		return t1, t2, t3
	}
	factor := 256 / (maxval + 1)
	t1 = clamp(max(2, 3/factor+3*near), near+1)
	t2 = clamp(max(3, 7/factor+5*near), t1)
	t3 = clamp(max(4, 21/factor+7*near), t2)
	return t1, t2, t3
}

// jlsContext holds the statistics of one regular-mode context (T.87 A.2.2): the sum of error
// magnitudes A, the bias sum B, the correction C and the count N.
type jlsContext struct{ a, b, c, n int }

// jlsRunContext holds the statistics of one run-interruption context: A, N and Nn, the count
// of negative errors.
type jlsRunContext struct{ a, n, nn int }

// jlsDecoder holds the state of one scan.
type jlsDecoder struct {
	p        jlsParams
	br       jlsBitReader
	quant    []int8 // gradient quantisation (T.87 A.3.3), indexed by gradient + MAXVAL
	regular  [365]jlsContext
	run      [2]jlsRunContext // by RItype
	runIndex int
}

// reset sets the contexts to their initial values, at the start and at each restart.
func (d *jlsDecoder) reset() {
	a := max(2, (d.p.rng+32)/64)
	for i := range d.regular {
		d.regular[i] = jlsContext{a: a, n: 1}
	}
	d.run = [2]jlsRunContext{{a: a, n: 1}, {a: a, n: 1}}
	d.runIndex = 0
}

// decodeJPEGLSScan decodes the rows×cols samples of the scan whose entropy-coded data starts
// data.
func decodeJPEGLSScan(data []byte, f jlsFrame, p jlsParams) ([]uint16, error) {
	d := &jlsDecoder{p: p, br: jlsBitReader{data: data}}
	d.quant = make([]int8, 2*p.maxval+1)
	for g := -p.maxval; g <= p.maxval; g++ {
		d.quant[g+p.maxval] = d.quantize(g)
	}
	d.reset()
	rows, cols := f.rows, f.cols
	out := make([]uint16, rows*cols)
	// two lines with one sample either side: index 0 is x = -1, index cols+1 is x = cols
	prev, cur := make([]int32, cols+2), make([]int32, cols+2)
	for y := range rows {
		if f.restart > 0 && y > 0 && y%f.restart == 0 {
			if err := d.br.restart(y/f.restart - 1); err != nil {
				return nil, err
			}
			// each interval is coded as if it were an image of its own
			d.reset()
			clear(prev)
		}
		if err := d.line(prev, cur); err != nil {
			return nil, fmt.Errorf("JPEG-LS line %d: %w", y, err)
		}
		if d.br.overran() {
			return nil, fmt.Errorf("JPEG-LS entropy-coded data ends before line %d does: %w", y, ErrCorrupt)
		}
		for x, v := range cur[1 : cols+1] {
			out[y*cols+x] = uint16(v)
		}
		prev, cur = cur, prev
	}
	return out, nil
}

// quantize maps a local gradient to one of the regions -4..4 that the thresholds bound.
func (d *jlsDecoder) quantize(g int) int8 {
	p := &d.p
	switch {
	case g <= -p.t3:
		return -4
	case g <= -p.t2:
		return -3
	case g <= -p.t1:
		return -2
	case g < -p.near:
		return -1
	case g <= p.near:
		return 0
	case g < p.t1:
		return 1
	case g < p.t2:
		return 2
	case g < p.t3:
		return 3
	}
	return 4
}

// line decodes one line into cur, the line above being prev.
func (d *jlsDecoder) line(prev, cur []int32) error {
	cols := len(cur) - 2
	// the neighbours beyond the edges (T.87 A.2.1): Ra of the first sample is the sample
	// above it, Rd of the last one the sample above it
	prev[cols+1] = prev[cols]
	cur[0] = prev[1]
	mv := d.p.maxval
	for x := 1; x <= cols; {
		ra, rb, rc, rd := int(cur[x-1]), int(prev[x]), int(prev[x-1]), int(prev[x+1])
		q1, q2, q3 := d.quant[rd-rb+mv], d.quant[rb-rc+mv], d.quant[rc-ra+mv]
		if q1 == 0 && q2 == 0 && q3 == 0 {
			n, err := d.runMode(prev, cur, x)
			if err != nil {
				return err
			}
			x += n
			continue
		}
		v, err := d.regularSample(q1, q2, q3, ra, rb, rc)
		if err != nil {
			return err
		}
		cur[x] = int32(v)
		x++
	}
	return nil
}

// regularSample decodes one sample in regular mode (T.87 A.4 to A.6).
func (d *jlsDecoder) regularSample(q1, q2, q3 int8, ra, rb, rc int) (int, error) {
	p := &d.p
	// contexts of opposite sign share statistics: the first nonzero region is made positive
	sign := 1
	if q1 < 0 || q1 == 0 && (q2 < 0 || q2 == 0 && q3 < 0) {
		sign, q1, q2, q3 = -1, -q1, -q2, -q3
	}
	ctx := &d.regular[81*int(q1)+9*int(q2)+int(q3)]

	// median edge detector, then the context's bias correction
	px := ra + rb - rc
	switch {
	case rc >= max(ra, rb):
		px = min(ra, rb)
	case rc <= min(ra, rb):
		px = max(ra, rb)
	}
	px = min(max(px+sign*ctx.c, 0), p.maxval)

	k := golombK(ctx.n, ctx.a)
	merr, err := d.br.golomb(k, p.limit, p.qbpp)
	if err != nil {
		return 0, err
	}
	if merr > 2*p.rng {
		return 0, fmt.Errorf("JPEG-LS mapped error %d beyond RANGE %d: %w", merr, p.rng, ErrCorrupt)
	}
	// MErrval 2e for e ≥ 0, -2e-1 for e < 0; the encoder swaps the two signs where the
	// context's bias is negative and k is 0 (lossless only)
	e := merr >> 1
	if merr&1 != 0 {
		e = -e - 1
	}
	if k == 0 && p.near == 0 && 2*ctx.b <= -ctx.n {
		e = -e - 1
	}
	ctx.update(e, p.near, p.reset)
	return d.reconstruct(px, sign*e), nil
}

// golombK is the Golomb-Rice parameter of a context with count n and magnitude sum a: the
// least k with n·2^k ≥ a.
func golombK(n, a int) int {
	k := 0
	for n<<k < a && k < 48 {
		k++
	}
	return k
}

// update adds the error e to the context's statistics, halving them every RESET samples, and
// moves the correction C by one where the average bias passes ±½ (T.87 A.6).
func (c *jlsContext) update(e, near, reset int) {
	c.b += e * (2*near + 1)
	c.a += jlsAbs(e)
	if c.n == reset {
		c.a >>= 1
		c.b >>= 1 // arithmetic: -((1-B)>>1) for negative B, as T.87 writes it
		c.n >>= 1
	}
	c.n++
	if c.b <= -c.n {
		c.b += c.n
		if c.c > -128 {
			c.c--
		}
		if c.b <= -c.n {
			c.b = -c.n + 1
		}
	} else if c.b > 0 {
		c.b -= c.n
		if c.c < 127 {
			c.c++
		}
		if c.b > 0 {
			c.b = 0
		}
	}
}

// reconstruct is the sample px + e·(2·NEAR+1), brought back into the range the encoder
// reduced the error modulo, then clamped to 0..MAXVAL.
func (d *jlsDecoder) reconstruct(px, e int) int {
	p := &d.p
	step := 2*p.near + 1
	v := px + e*step
	if v < -p.near {
		v += p.rng * step
	} else if v > p.maxval+p.near {
		v -= p.rng * step
	}
	return min(max(v, 0), p.maxval)
}

// runMode decodes a run of samples equal to (within NEAR of) Ra from sample x on, then the
// sample that interrupts it unless the run reached the end of the line (T.87 A.7). It returns
// how many samples it decoded.
func (d *jlsDecoder) runMode(prev, cur []int32, x int) (int, error) {
	cols := len(cur) - 2
	ra := cur[x-1]
	left := cols - x + 1
	n := 0
	for n < left {
		if d.br.bits(1) == 0 {
			// a shorter run: its remainder follows in J[RUNindex] bits
			n += int(d.br.bits(jlsJ[d.runIndex]))
			break
		}
		step := 1 << jlsJ[d.runIndex]
		if step <= left-n {
			d.runIndex = min(d.runIndex+1, 31)
		}
		n = min(n+step, left)
	}
	if n > left {
		return 0, fmt.Errorf("JPEG-LS run of %d samples where %d are left in the line: %w", n, left, ErrCorrupt)
	}
	for i := range n {
		cur[x+i] = ra
	}
	if n == left {
		return n, nil
	}
	v, err := d.interruption(int(ra), int(prev[x+n]))
	if err != nil {
		return 0, err
	}
	cur[x+n] = int32(v)
	d.runIndex = max(d.runIndex-1, 0)
	return n + 1, nil
}

// interruption decodes the sample that ends a run, Ra and Rb being its neighbours (T.87
// A.7.2): predicted from Ra where Ra and Rb are alike (RItype 1), from Rb otherwise.
func (d *jlsDecoder) interruption(ra, rb int) (int, error) {
	p := &d.p
	riType := 0
	if jlsAbs(ra-rb) <= p.near {
		riType = 1
	}
	ctx := &d.run[riType]
	k := golombK(ctx.n, ctx.a+(ctx.n>>1)*riType)
	em, err := d.br.golomb(k, p.limit-jlsJ[d.runIndex]-1, p.qbpp)
	if err != nil {
		return 0, err
	}
	if em > 2*p.rng {
		return 0, fmt.Errorf("JPEG-LS mapped error %d beyond RANGE %d: %w", em, p.rng, ErrCorrupt)
	}
	// EMErrval = 2|e| - RItype - map; the map bit and the context's share of negative
	// errors give the sign
	t := em + riType
	mapBit := t & 1
	e := (t + mapBit) >> 1
	if (k != 0 || 2*ctx.nn >= ctx.n) == (mapBit == 1) {
		e = -e
	}
	if e < 0 {
		ctx.nn++
	}
	ctx.a += (em + 1 - riType) >> 1
	if ctx.n == p.reset {
		ctx.a >>= 1
		ctx.n >>= 1
		ctx.nn >>= 1
	}
	ctx.n++
	if riType == 1 {
		return d.reconstruct(ra, e), nil
	}
	if ra > rb {
		e = -e
	}
	return d.reconstruct(rb, e), nil
}

func jlsAbs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// jlsBitReader reads JPEG-LS entropy-coded data (T.87 A.1): after a 0xFF byte the encoder
// stuffs a 0 bit, so the next byte carries 7 bits; 0xFF followed by a byte with its high bit
// set is a marker, which ends the data. Past the end it serves 0 bits, counted so that taking
// them is an error.
type jlsBitReader struct {
	data   []byte
	pos    int
	acc    uint64 // the next n bits, left-aligned; the bits below them are 0
	n      int
	afterF bool // the last byte read was 0xFF
	fake   int  // bits served past the end of the data
}

// fill tops the accumulator up to more than 56 bits.
func (r *jlsBitReader) fill() {
	for r.n <= 56 {
		if r.pos >= len(r.data) || r.data[r.pos] == 0xFF && (r.pos+1 == len(r.data) || r.data[r.pos+1]&0x80 != 0) {
			r.n += 8
			r.fake += 8
			continue
		}
		c := r.data[r.pos]
		r.pos++
		if r.afterF {
			r.acc |= uint64(c&0x7F) << (64 - 7 - r.n)
			r.n += 7
		} else {
			r.acc |= uint64(c) << (64 - 8 - r.n)
			r.n += 8
		}
		r.afterF = c == 0xFF
	}
}

// overran says whether the decoder took bits past the end of the data.
func (r *jlsBitReader) overran() bool { return r.fake > r.n }

// bits reads k ≤ 56 bits.
func (r *jlsBitReader) bits(k int) uint64 {
	if k == 0 {
		return 0
	}
	if r.n < k {
		r.fill()
	}
	v := r.acc >> (64 - k)
	r.acc <<= k
	r.n -= k
	return v
}

// golomb reads a mapped error value in the limited-length Golomb code of T.87 A.5.3: a
// unary prefix, then k bits, or after limit-qbpp-1 zeros the value less one in qbpp bits.
func (r *jlsBitReader) golomb(k, limit, qbpp int) (int, error) {
	escape := limit - qbpp - 1
	prefix := 0
	for {
		if r.n < 32 {
			r.fill()
		}
		if z := bits.LeadingZeros64(r.acc); z < r.n {
			prefix += z
			r.acc <<= z + 1
			r.n -= z + 1
			break
		}
		prefix += r.n
		r.acc, r.n = 0, 0
		if prefix > escape {
			break
		}
	}
	switch {
	case prefix > escape:
		return 0, fmt.Errorf("JPEG-LS Golomb code of more than %d leading zeros: %w", escape, ErrCorrupt)
	case prefix == escape:
		return int(r.bits(qbpp)) + 1, nil
	}
	return prefix<<k | int(r.bits(k)), nil
}

// restart skips the padding at the end of restart interval m and the RSTm marker after it
// (the interval's bits end within the byte before the marker), leaving the reader at the
// start of the next interval.
func (r *jlsBitReader) restart(m int) error {
	if r.overran() {
		return fmt.Errorf("JPEG-LS entropy-coded data ends before restart interval %d does: %w", m, ErrCorrupt)
	}
	p := r.pos
	if r.afterF && p < len(r.data) && r.data[p] < 0x80 {
		p++ // the byte that follows a final 0xFF, not yet read
	}
	if p >= len(r.data) || r.data[p] != 0xFF {
		return fmt.Errorf("JPEG-LS restart marker %d expected at byte %d: %w", m%8, p, ErrCorrupt)
	}
	for p < len(r.data) && r.data[p] == 0xFF {
		p++ // fill bytes
	}
	if p >= len(r.data) || int(r.data[p]) != 0xD0+m%8 {
		return fmt.Errorf("JPEG-LS restart marker %d expected at byte %d: %w", m%8, p, ErrCorrupt)
	}
	*r = jlsBitReader{data: r.data, pos: p + 1}
	return nil
}
