package cohort

import (
	"fmt"
	"math"

	"connectome/internal/tables"
)

type vec3 = [3]float64

func add(a, b vec3) vec3           { return vec3{a[0] + b[0], a[1] + b[1], a[2] + b[2]} }
func scale(a vec3, s float64) vec3 { return vec3{a[0] * s, a[1] * s, a[2] * s} }
func dot(a, b vec3) float64        { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func cross(a, b vec3) vec3 {
	return vec3{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

// rowDir and colDir: IOP[0:3] is the direction in which the column index grows (along a
// row), IOP[3:6] the direction in which the row index grows (DICOM PS3.3 C.7.6.2.1.1).
func rowDir(in *tables.Instance) vec3 {
	o := in.ImageOrientationPatient
	return vec3{o[0], o[1], o[2]}
}

func colDir(in *tables.Instance) vec3 {
	o := in.ImageOrientationPatient
	return vec3{o[3], o[4], o[5]}
}

// normal is the slice normal X × Y; positions along it order the slices of a series.
func normal(in *tables.Instance) vec3 { return cross(rowDir(in), colDir(in)) }

// pixelToLPS maps a point in SCOORD image coordinates (column x, row y; (0,0) is the
// top-left corner of the top-left pixel, so pixel (i,j)'s centre is (i+0.5, j+0.5)) to
// patient coordinates (LPS, mm):
//
//	P = IPP + X·ΔX·(x − 0.5) + Y·ΔY·(y − 0.5)
//
// with X = IOP[0:3], Y = IOP[3:6], ΔX = PixelSpacing[1] (column spacing), ΔY =
// PixelSpacing[0] (row spacing). IPP is the centre of the first pixel (idc-data-model §7.2).
func pixelToLPS(in *tables.Instance, x, y float64) vec3 {
	return voxelToLPS(in, x-0.5, y-0.5)
}

// voxelToLPS maps continuous pixel indices (i along a row = column index, j = row index;
// integer values at pixel centres) to LPS.
func voxelToLPS(in *tables.Instance, i, j float64) vec3 {
	p := vec3(in.ImagePositionPatient)
	p = add(p, scale(rowDir(in), in.PixelSpacing[1]*i))
	return add(p, scale(colDir(in), in.PixelSpacing[0]*j))
}

// checkGeometry reports why an instance's geometry cannot place a box.
func checkGeometry(in *tables.Instance) error {
	if in.PixelSpacing[0] <= 0 || in.PixelSpacing[1] <= 0 {
		return fmt.Errorf("PixelSpacing %v is not positive", in.PixelSpacing)
	}
	x, y := rowDir(in), colDir(in)
	if math.Abs(dot(x, x)-1) > 1e-3 || math.Abs(dot(y, y)-1) > 1e-3 || math.Abs(dot(x, y)) > 1e-3 {
		return fmt.Errorf("ImageOrientationPatient %v is not two orthonormal directions", in.ImageOrientationPatient)
	}
	for _, v := range in.ImagePositionPatient {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("ImagePositionPatient %v is not finite", in.ImagePositionPatient)
		}
	}
	return nil
}
