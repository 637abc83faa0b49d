package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
)

// previewSide is the longest side of an embedded preview, in pixels: big enough to see the
// tumour in the detail panel, small enough that 289 previews stay well under 2 MB.
func previewSide(nodes int) int {
	switch {
	case nodes <= 1000:
		return 128
	case nodes <= 3000:
		return 80
	default:
		return 56
	}
}

// previewBudget caps the bytes of all embedded previews together; past it, previews are
// left out (and counted) so that the page stays small enough to open.
const previewBudget = 6 << 20

// previewDataURI reads a PNG, downscales it to fit side×side (box filter, aspect kept) and
// returns it as a data: URI. Greyscale images stay 8-bit grey, which keeps them small.
func previewDataURI(path string, side int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return "", fmt.Errorf("decode preview %s: %w", path, err)
	}
	small := downscale(img, side)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, small); err != nil {
		return "", fmt.Errorf("encode preview %s: %w", path, err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// downscale shrinks img to fit side×side by averaging source pixels (box filter); smaller
// images are returned as they are. Grey sources give *image.Gray, others *image.RGBA.
func downscale(img image.Image, side int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= side && h <= side {
		return img
	}
	scale := float64(side) / float64(max(w, h))
	nw, nh := max(1, int(float64(w)*scale+0.5)), max(1, int(float64(h)*scale+0.5))
	_, grey := img.(*image.Gray)
	if g16, ok := img.(*image.Gray16); ok && g16 != nil {
		grey = true
	}
	var out settable = image.NewRGBA(image.Rect(0, 0, nw, nh))
	if grey {
		out = image.NewGray(image.Rect(0, 0, nw, nh))
	}
	for y := range nh {
		y0, y1 := b.Min.Y+y*h/nh, b.Min.Y+(y+1)*h/nh
		for x := range nw {
			x0, x1 := b.Min.X+x*w/nw, b.Min.X+(x+1)*w/nw
			var r, g, bl, a, n uint64
			for sy := y0; sy < max(y1, y0+1); sy++ {
				for sx := x0; sx < max(x1, x0+1); sx++ {
					cr, cg, cb, ca := img.At(sx, sy).RGBA()
					r, g, bl, a, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), a+uint64(ca), n+1
				}
			}
			out.Set(x, y, color.RGBA64{uint16(r / n), uint16(g / n), uint16(bl / n), uint16(a / n)})
		}
	}
	return out
}

// settable is the part of image.Gray / image.RGBA that downscale writes through.
type settable interface {
	image.Image
	Set(x, y int, c color.Color)
}
