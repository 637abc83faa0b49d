package dicomio

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"connectome/internal/patch"
	"connectome/internal/tables"
)

// ErrGeometry marks a series whose slice geometry does not allow the crop.
var ErrGeometry = errors.New("slice geometry")

// Series is a CT series in ITK slice order with its (NIfTI-quantised) geometry.
type Series struct {
	Slices   []SliceHeader // sorted ascending along the slice normal
	Pos      []float64     // dot(IPP, normal) of each sorted slice
	Normal   [3]float64
	Geometry patch.Geometry
}

// Orientation and spacing agreement between slices. DICOM decimal strings carry about 6
// significant digits; real series agree to that.
const (
	iopTol     = 1e-4
	spacingTol = 1e-4
)

// NewSeries orders slice headers as ITK's GDCM series reader does (ascending by
// dot(IPP, row×col)) and derives the geometry of spec §2.1. It rejects series whose slices
// disagree on orientation, size or pixel spacing, and series of fewer than 2 slices.
func NewSeries(headers []SliceHeader) (*Series, error) {
	if len(headers) < 2 {
		return nil, fmt.Errorf("series has %d slice(s), need at least 2: %w", len(headers), ErrGeometry)
	}
	if err := sameImages(headers); err != nil {
		return nil, err
	}
	first := headers[0]
	row := [3]float64{first.IOP[0], first.IOP[1], first.IOP[2]}
	col := [3]float64{first.IOP[3], first.IOP[4], first.IOP[5]}
	normal := cross(row, col)
	if nn := normal[0]*normal[0] + normal[1]*normal[1] + normal[2]*normal[2]; math.Abs(nn-1) > 1e-3 {
		return nil, fmt.Errorf("ImageOrientationPatient %v is not two orthonormal vectors: %w", first.IOP, ErrGeometry)
	}
	s := &Series{Slices: append([]SliceHeader(nil), headers...), Normal: normal}
	pos := make([]float64, len(s.Slices))
	for i, h := range s.Slices {
		pos[i] = dot(normal, h.IPP)
	}
	idx := make([]int, len(pos))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return pos[idx[a]] < pos[idx[b]] })
	sorted := make([]SliceHeader, len(idx))
	s.Pos = make([]float64, len(idx))
	for i, j := range idx {
		sorted[i], s.Pos[i] = s.Slices[j], pos[j]
	}
	s.Slices = sorted
	lo, hi := sorted[0].IPP, sorted[len(sorted)-1].IPP
	var d [3]float64
	for a := 0; a < 3; a++ {
		d[a] = hi[a] - lo[a]
	}
	// numpy.linalg.norm: sqrt of the sum of squares, summed in order
	dist := math.Sqrt(float64(float64(d[0]*d[0])+float64(d[1]*d[1])) + float64(d[2]*d[2]))
	sz := dist / float64(len(sorted)-1)
	if !(sz > 0) {
		return nil, fmt.Errorf("all %d slices at the same position %v: %w", len(sorted), lo, ErrGeometry)
	}
	g := patch.Geometry{
		Size:    [3]int{first.Columns, first.Rows, len(sorted)},
		Spacing: [3]float64{sorted[0].PixelSpacing[1], sorted[0].PixelSpacing[0], sz},
		Origin:  lo,
	}
	for r := 0; r < 3; r++ {
		g.Direction[r] = [3]float64{row[r], col[r], normal[r]}
	}
	s.Geometry = g.Quantised()
	if err := s.Geometry.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrGeometry)
	}
	return s, nil
}

// sameImages checks that every slice agrees with the first on orientation, image size,
// pixel spacing and series.
func sameImages(headers []SliceHeader) error {
	first := headers[0]
	for _, h := range headers[1:] {
		// first: slices of two series differ in everything else too, and that is the cause
		if h.SeriesInstanceUID != first.SeriesInstanceUID {
			return fmt.Errorf("slices of two series: %s is in %q, %s in %q (give one series per folder): %w",
				name(first), first.SeriesInstanceUID, name(h), h.SeriesInstanceUID, ErrGeometry)
		}
		for c := 0; c < 6; c++ {
			if math.Abs(h.IOP[c]-first.IOP[c]) > iopTol {
				return fmt.Errorf("mixed orientations: %s has ImageOrientationPatient %v, %s has %v: %w",
					name(first), first.IOP, name(h), h.IOP, ErrGeometry)
			}
		}
		if h.Rows != first.Rows || h.Columns != first.Columns {
			return fmt.Errorf("mixed image sizes: %s is %d×%d, %s is %d×%d: %w",
				name(first), first.Rows, first.Columns, name(h), h.Rows, h.Columns, ErrGeometry)
		}
		for c := 0; c < 2; c++ {
			if math.Abs(h.PixelSpacing[c]-first.PixelSpacing[c]) > spacingTol {
				return fmt.Errorf("mixed pixel spacings: %s has %v, %s has %v: %w",
					name(first), first.PixelSpacing, name(h), h.PixelSpacing, ErrGeometry)
			}
		}
	}
	return nil
}

func name(h SliceHeader) string {
	if h.Path != "" {
		return h.Path
	}
	if h.SOPInstanceUID != "" {
		return h.SOPInstanceUID
	}
	return fmt.Sprintf("slice %d", h.Index)
}

// cross is numpy.cross for 3-vectors (same products and order).
func cross(a, b [3]float64) [3]float64 {
	return [3]float64{
		float64(a[1]*b[2]) - float64(a[2]*b[1]),
		float64(a[2]*b[0]) - float64(a[0]*b[2]),
		float64(a[0]*b[1]) - float64(a[1]*b[0]),
	}
}

func dot(a, b [3]float64) float64 {
	return float64(float64(a[0]*b[0])+float64(a[1]*b[1])) + float64(a[2]*b[2])
}

// FromInstances builds a series from rows of the cohort instances table, without reading any
// file (the plan of fetch and the geometry of preprocess). SliceHeader.Index is the row's
// index in rows and Path is path(row) (nil: the row's LocalPath).
func FromInstances(rows []tables.Instance, path func(tables.Instance) string) (*Series, error) {
	hs := make([]SliceHeader, len(rows))
	for i, r := range rows {
		p := r.LocalPath
		if path != nil {
			p = path(r)
		}
		hs[i] = SliceHeader{
			Path: p, Index: i,
			SeriesInstanceUID: r.SeriesInstanceUID, SOPInstanceUID: r.SOPInstanceUID,
			InstanceNumber: int(r.InstanceNumber),
			IPP:            r.ImagePositionPatient, IOP: r.ImageOrientationPatient,
			PixelSpacing: r.PixelSpacing, Rows: int(r.Rows), Columns: int(r.Columns),
		}
		if hs[i].Rows <= 0 || hs[i].Columns <= 0 || hs[i].PixelSpacing[0] <= 0 || hs[i].PixelSpacing[1] <= 0 {
			return nil, fmt.Errorf("instance %s: no geometry in the instances table (rows %d, columns %d, spacing %v): %w",
				r.SOPInstanceUID, r.Rows, r.Columns, r.PixelSpacing, ErrGeometry)
		}
	}
	return NewSeries(hs)
}

// CheckWindow checks the slices [lo, hi] (sorted order) that a crop reads, plus one neighbour
// each side where there is one: no two at the same position, and equal gaps. A missing or
// duplicated slice there would distort the crop silently, since ITK stacks what it gets. Gaps
// elsewhere in the series are left to ITK's semantics (spacing from first and last slice).
func (s *Series) CheckWindow(lo, hi int) error {
	lo, hi = max(lo-1, 0), min(hi+1, len(s.Slices)-1)
	if hi <= lo {
		return nil
	}
	gaps := make([]float64, 0, hi-lo)
	for k := lo; k < hi; k++ {
		gap := s.Pos[k+1] - s.Pos[k]
		if math.Abs(gap) < 1e-3*s.Geometry.Spacing[2] {
			return fmt.Errorf("duplicate slice position %.4f mm (%s and %s): %w", s.Pos[k], name(s.Slices[k]), name(s.Slices[k+1]), ErrGeometry)
		}
		gaps = append(gaps, gap)
	}
	sorted := append([]float64(nil), gaps...)
	sort.Float64s(sorted)
	med := sorted[len(sorted)/2]
	for i, gap := range gaps {
		if math.Abs(gap-med) > 0.02*med+0.01 {
			k := lo + i
			return fmt.Errorf("non-uniform slice positions: gap %.4f mm between %s and %s, %.4f mm elsewhere: %w",
				gap, name(s.Slices[k]), name(s.Slices[k+1]), med, ErrGeometry)
		}
	}
	return nil
}
