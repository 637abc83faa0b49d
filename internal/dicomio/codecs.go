package dicomio

import "encoding/binary"

// The compressed transfer syntaxes dicomio decodes, each by the decoder of its own file.

// frameDecoder decodes one compressed frame (the fragments of a single-frame object,
// concatenated) into native little-endian Pixel Data: Rows×Columns samples of BitsAllocated
// bits, signed samples sign-extended from the coded precision, as the uncompressed object
// would hold them.
type frameDecoder func(frame []byte, h SliceHeader) ([]byte, error)

// frameDecoderFor returns the decoder of transfer syntax ts, or nil where dicomio does not
// decode it (the slice then fails, naming the syntax).
func frameDecoderFor(ts string) frameDecoder {
	switch ts {
	case rleLossless:
		return func(frame []byte, h SliceHeader) ([]byte, error) {
			return decodeRLE(frame, h.Rows, h.Columns, h.BitsAllocated)
		}
	case jpegLosslessSV1, jpegLossless:
		return func(frame []byte, h SliceHeader) ([]byte, error) {
			return decodeJPEGLossless(frame, h.Rows, h.Columns, h.BitsAllocated, h.PixelRepresentation == 1)
		}
	case jpegLSLossless, jpegLSNearLossless:
		return func(frame []byte, h SliceHeader) ([]byte, error) {
			return decodeJPEGLS(frame, h.Rows, h.Columns, h.BitsAllocated, h.PixelRepresentation == 1)
		}
	case jpeg2000Lossless, jpeg2000:
		return func(frame []byte, h SliceHeader) ([]byte, error) {
			return decodeJPEG2000(frame, ts, h.Rows, h.Columns, h.BitsAllocated, h.PixelRepresentation == 1)
		}
	case jpegBaseline, jpegExtended:
		return func(frame []byte, h SliceHeader) ([]byte, error) {
			return decodeJPEGDCT(frame, h.Rows, h.Columns, h.BitsAllocated, h.PixelRepresentation == 1)
		}
	}
	return nil
}

// putSample stores sample i, a value of precision bits, as native Pixel Data of bitsAllocated
// bits (8 or 16): a signed sample is sign-extended from its precision, as the uncompressed
// object holds it. Every pure-Go decoder writes its output through it.
func putSample(out []byte, i, v, precision, bitsAllocated int, signed bool) {
	if signed && v&(1<<(precision-1)) != 0 {
		v |= 0xFFFF &^ (1<<precision - 1)
	}
	if bitsAllocated == 8 {
		out[i] = byte(v)
	} else {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
}

// decodesEncapsulated reports whether ts is a compressed syntax dicomio decodes.
func decodesEncapsulated(ts string) bool {
	return frameDecoderFor(ts) != nil
}
