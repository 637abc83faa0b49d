package dicomio

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

// decodesEncapsulated reports whether ts is a compressed syntax dicomio decodes.
func decodesEncapsulated(ts string) bool {
	return frameDecoderFor(ts) != nil
}
