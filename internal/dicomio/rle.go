package dicomio

import (
	"encoding/binary"
	"fmt"
)

// RLE Lossless (PS3.5 Annex G), decoded in pure Go, and the encapsulated Pixel Data that RLE
// and JPEG Lossless (jpegll.go) share. A single-frame object holds, in its encapsulated Pixel
// Data, an empty or one-entry Basic Offset Table item and the frame's fragments. An RLE frame
// is a 64-byte header (the segment count, then up to 15 segment offsets from the header's
// start) and one PackBits segment per byte plane, most significant plane first.

// rleLossless is the transfer syntax UID of RLE Lossless (the library names no constant).
const rleLossless = "1.2.840.10008.1.2.5"

const (
	itemTag      = 0xE000FFFE // (FFFE,E000) as read little-endian as one uint32
	delimiterTag = 0xE0DDFFFE // (FFFE,E0DD)
	rleHeaderLen = 64
)

// encapsulatedFrame returns the bytes of the single frame in value, the value of an
// encapsulated Pixel Data element (its items, up to and including the delimiter or the end):
// the fragments after the Basic Offset Table, concatenated.
func encapsulatedFrame(value []byte) ([]byte, error) {
	var frame []byte
	first := true
	for off := 0; ; {
		if off+8 > len(value) {
			return nil, fmt.Errorf("encapsulated pixel data ends inside an item header at byte %d: %w", off, ErrCorrupt)
		}
		tg := binary.LittleEndian.Uint32(value[off:])
		n := int64(binary.LittleEndian.Uint32(value[off+4:]))
		off += 8
		if tg == delimiterTag {
			break
		}
		if tg != itemTag {
			return nil, fmt.Errorf("encapsulated pixel data: tag %08X where an item was expected: %w", tg, ErrCorrupt)
		}
		if n > int64(len(value)-off) {
			return nil, fmt.Errorf("encapsulated pixel data: item of %d bytes past the end: %w", n, ErrCorrupt)
		}
		if !first {
			frame = append(frame, value[off:off+int(n)]...)
		} else if n > 4 {
			// the offset table of a single frame has at most one entry
			return nil, fmt.Errorf("encapsulated pixel data: offset table of %d frames: multi-frame object: %w", n/4, ErrUnsupported)
		}
		first = false
		off += int(n)
		if off == len(value) {
			break // no delimiter: tolerated, as the parser does
		}
	}
	if len(frame) == 0 {
		return nil, fmt.Errorf("encapsulated pixel data holds no fragment: %w", ErrNoPixelData)
	}
	return frame, nil
}

// decodeRLE decodes one RLE Lossless frame of rows×cols samples of bitsAllocated bits (8 or
// 16, one sample per pixel) into native little-endian bytes, as uncompressed Pixel Data
// stores them.
func decodeRLE(frame []byte, rows, cols, bitsAllocated int) ([]byte, error) {
	if bitsAllocated != 8 && bitsAllocated != 16 {
		return nil, fmt.Errorf("RLE with %d bits allocated: %w", bitsAllocated, ErrUnsupported)
	}
	if len(frame) < rleHeaderLen {
		return nil, fmt.Errorf("RLE frame of %d bytes has no 64-byte header: %w", len(frame), ErrCorrupt)
	}
	planes := bitsAllocated / 8
	nseg := int(binary.LittleEndian.Uint32(frame))
	if nseg != planes {
		return nil, fmt.Errorf("RLE frame has %d segments, %d bits allocated need %d: %w", nseg, bitsAllocated, planes, ErrCorrupt)
	}
	pixels := rows * cols
	out := make([]byte, pixels*planes)
	for s := range nseg {
		start := int64(binary.LittleEndian.Uint32(frame[4+4*s:]))
		end := int64(len(frame))
		if s+1 < nseg {
			end = int64(binary.LittleEndian.Uint32(frame[8+4*s:]))
		}
		if start < rleHeaderLen || end < start || end > int64(len(frame)) {
			return nil, fmt.Errorf("RLE segment %d at bytes [%d, %d) of a %d-byte frame: %w", s+1, start, end, len(frame), ErrCorrupt)
		}
		// segment s holds byte plane planes-1-s (most significant first) of each sample
		if err := unpackBits(frame[start:end], out, planes-1-s, planes, pixels); err != nil {
			return nil, fmt.Errorf("RLE segment %d: %w", s+1, err)
		}
	}
	return out, nil
}

// unpackBits decodes the PackBits segment seg into byte plane plane of out (every stride-th
// byte from plane on); it must yield at least n bytes (a trailing pad byte is dropped).
func unpackBits(seg, out []byte, plane, stride, n int) error {
	k := 0 // bytes written
	put := func(b byte) {
		if k < n {
			out[k*stride+plane] = b
		}
		k++
	}
	for i := 0; i < len(seg) && k < n; {
		h := int8(seg[i])
		i++
		switch {
		case h >= 0: // copy the next h+1 bytes
			m := int(h) + 1
			if i+m > len(seg) {
				return fmt.Errorf("literal run of %d bytes past the segment's end: %w", m, ErrCorrupt)
			}
			for _, b := range seg[i : i+m] {
				put(b)
			}
			i += m
		case h != -128: // repeat the next byte 1-h times
			if i >= len(seg) {
				return fmt.Errorf("replicate run without its byte: %w", ErrCorrupt)
			}
			for range 1 - int(h) {
				put(seg[i])
			}
			i++
		}
	}
	if k < n {
		return fmt.Errorf("decodes to %d bytes, the image needs %d: %w", k, n, ErrCorrupt)
	}
	return nil
}
