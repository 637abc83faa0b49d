package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"connectome/internal/patch"
)

// QC preview layout: three 64 mm planes, each scaled ×2.
const (
	qcScale = 2
	qcSide  = 64 * qcScale
)

var (
	seedColor = color.RGBA{255, 40, 40, 255}
	boxColor  = color.RGBA{40, 220, 60, 255}
)

// QCImage renders axial, coronal and sagittal planes through the seed of the QC patch (RAS,
// 1 mm, 64³) side by side, radiological convention (patient right on the image left, anterior
// and superior up), with a cross at the seed and the lesion box when it is known (box corners
// all zero = unknown).
func QCImage(t *patch.Tensor, seedLPS, boxMin, boxMax [3]float64) ([]byte, error) {
	if t == nil || t.Shape[2] != 64 || t.Shape[3] != 64 || t.Shape[4] != 64 {
		return nil, fmt.Errorf("qc patch must be 64³")
	}
	img := image.NewRGBA(image.Rect(0, 0, 3*qcSide, qcSide))
	c := t.Plan.SeedTensorIndex()
	at := func(x, y, z int) float32 { return t.Data[(x*64+y)*64+z] }
	// each panel: which tensor axes run along the image columns and rows (both reversed)
	panels := []struct {
		col, row, fixed int
	}{
		{0, 1, 2}, // axial: R→left, A→up
		{0, 2, 1}, // coronal: R→left, S→up
		{1, 2, 0}, // sagittal: A→left, S→up
	}
	for p, pn := range panels {
		for py := 0; py < qcSide; py++ {
			for px := 0; px < qcSide; px++ {
				var idx [3]int
				idx[pn.col] = 63 - px/qcScale
				idx[pn.row] = 63 - py/qcScale
				idx[pn.fixed] = min(max(c[pn.fixed], 0), 63)
				g := uint8(math.Round(255 * float64(min(max(at(idx[0], idx[1], idx[2]), 0), 1))))
				img.SetRGBA(p*qcSide+px, py, color.RGBA{g, g, g, 255})
			}
		}
		toPix := func(v [3]float64, axis int) int {
			return int(math.Round((63.5 - v[axis]) * qcScale))
		}
		if boxMin != ([3]float64{}) || boxMax != ([3]float64{}) {
			a, b := t.Plan.TensorIndex(boxMin), t.Plan.TensorIndex(boxMax)
			x0, x1 := toPix(a, pn.col), toPix(b, pn.col)
			y0, y1 := toPix(a, pn.row), toPix(b, pn.row)
			rect(img, p*qcSide, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
		}
		sx := (63-c[pn.col])*qcScale + qcScale/2
		sy := (63-c[pn.row])*qcScale + qcScale/2
		for d := -6; d <= 6; d++ {
			if d > -2 && d < 2 {
				continue // leave the seed voxel itself visible
			}
			set(img, p*qcSide, sx+d, sy, seedColor)
			set(img, p*qcSide, sx, sy+d, seedColor)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func set(img *image.RGBA, x0, x, y int, c color.RGBA) {
	if x >= 0 && x < qcSide && y >= 0 && y < qcSide {
		img.SetRGBA(x0+x, y, c)
	}
}

func rect(img *image.RGBA, x0, xa, ya, xb, yb int) {
	for x := xa; x <= xb; x++ {
		set(img, x0, x, ya, boxColor)
		set(img, x0, x, yb, boxColor)
	}
	for y := ya; y <= yb; y++ {
		set(img, x0, xa, y, boxColor)
		set(img, x0, xb, y, boxColor)
	}
}
