// Package sr reads the planar ROI measurement groups (TID 1500 → TID 1410) of a DICOM
// Structured Report: per group its tracking identifier and UID, finding, image region
// (SCOORD) and the image it was drawn on. It reads the content tree as the JSON that
// BigQuery's TO_JSON_STRING(ContentSequence) returns for IDC's dicom_all; an SR object read
// from its file (ReadDICOM: the cohort stage's default, and the demo's SRs when loaded into
// the emulator) is turned into that JSON first, so one walker reads both.
package sr

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Code is a coded concept (the first item of a code sequence).
type Code struct {
	Value   string // CodeValue
	Scheme  string // CodingSchemeDesignator
	Meaning string // CodeMeaning
}

// Box is one measurement group: in NLST-Sybil, one bounding box on one CT slice.
type Box struct {
	// Group is the 0-based position of the group among all measurement groups of the document.
	Group       int
	TrackingID  string // TEXT (DCM 112039), e.g. "Bounding box #3"
	TrackingUID string // UIDREF (DCM 112040)
	Finding     Code   // CODE (DCM 121071), SCT 52988006 "Lesion" in NLST-Sybil
	// GraphicType and Points are the group's image region (SCOORD): 2-D image coordinates of
	// the referenced slice as (column, row) pairs, (0,0) at the top-left corner of the top-left pixel.
	GraphicType string
	Points      []float64
	// SOPInstanceUID is the referenced image (the SCOORD's SELECTED FROM IMAGE child).
	SOPInstanceUID string
	// Err tells why this group cannot be used as a box; nil when it can.
	Err error
}

// Rect returns the box's pixel extent: min and max column (x) and row (y) over its points.
// Call it only when Err is nil.
func (b Box) Rect() (x0, y0, x1, y1 float64) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for i := 0; i+1 < len(b.Points); i += 2 {
		x0, x1 = math.Min(x0, b.Points[i]), math.Max(x1, b.Points[i])
		y0, y1 = math.Min(y0, b.Points[i+1]), math.Max(y1, b.Points[i+1])
	}
	return x0, y0, x1, y1
}

// Concept codes that identify the parts of TID 1500 / TID 1410 the walker reads.
const (
	codeMeasurementGroup = "125007" // DCM
	codeTrackingID       = "112039" // DCM
	codeTrackingUID      = "112040" // DCM
	codeFinding          = "121071" // DCM
)

// maxDepth bounds recursion on hostile input; real SRs are about 5 levels deep.
const maxDepth = 32

// ErrNoContent is returned for a document without a content tree.
var ErrNoContent = errors.New("SR has no content")

// node is one content item (or any sequence item) as keyword → value, as JSON decodes it with
// UseNumber: values are string, json.Number, bool, nil, []any of those, or []any of node.
type node = map[string]any

// boxesFromTree walks the document's ContentSequence (a []any of items) and returns every
// measurement group, in document order. Groups that are not usable boxes carry Err.
func boxesFromTree(content []any) ([]Box, error) {
	if len(content) == 0 {
		return nil, ErrNoContent
	}
	var out []Box
	var walk func(items []any, depth int) error
	walk = func(items []any, depth int) error {
		if depth > maxDepth {
			return fmt.Errorf("content tree deeper than %d levels", maxDepth)
		}
		for _, it := range items {
			n, ok := it.(node)
			if !ok {
				continue
			}
			if isMeasurementGroup(n) {
				b := readGroup(n)
				b.Group = len(out)
				out = append(out, b)
				continue
			}
			if err := walk(seq(n, "ContentSequence"), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(content, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func isMeasurementGroup(n node) bool {
	if !strings.EqualFold(str(n["ValueType"]), "CONTAINER") {
		return false
	}
	c := code(n, "ConceptNameCodeSequence")
	// IDC's own SQL matches on the meaning; the code is the robust key. Accept either.
	return c.Value == codeMeasurementGroup || strings.EqualFold(c.Meaning, "Measurement Group")
}

// readGroup reads one TID 1410 group.
func readGroup(g node) Box {
	b, scoords := groupItems(g)
	switch len(scoords) {
	case 0:
		b.Err = errors.New("measurement group has no image region (SCOORD)")
	case 1:
		readRegion(&b, scoords[0])
	default:
		b.Err = fmt.Errorf("measurement group has %d image regions (SCOORD), want 1", len(scoords))
	}
	return b
}

// groupItems reads the group's tracking identifier and UID and its finding, and returns its
// image regions (SCOORD items) unread.
func groupItems(g node) (b Box, scoords []node) {
	for _, it := range seq(g, "ContentSequence") {
		c, ok := it.(node)
		if !ok {
			continue
		}
		name := code(c, "ConceptNameCodeSequence").Value
		switch strings.ToUpper(str(c["ValueType"])) {
		case "TEXT":
			if name == codeTrackingID {
				b.TrackingID = str(c["TextValue"])
			}
		case "UIDREF":
			if name == codeTrackingUID {
				b.TrackingUID = str(c["UID"])
			}
		case "CODE":
			if name == codeFinding {
				b.Finding = code(c, "ConceptCodeSequence")
			}
		case "SCOORD":
			scoords = append(scoords, c)
		}
	}
	return b, scoords
}

// readRegion reads the image region s into b: graphic type, points and the referenced image
// (the SCOORD's SELECTED FROM IMAGE child), and sets b.Err when it is not a usable box.
func readRegion(b *Box, s node) {
	b.GraphicType = strings.ToUpper(strings.TrimSpace(str(s["GraphicType"])))
	for _, it := range seq(s, "ContentSequence") {
		if c, ok := it.(node); ok && strings.EqualFold(str(c["ValueType"]), "IMAGE") {
			if r := seq(c, "ReferencedSOPSequence"); len(r) > 0 {
				if rn, ok := r[0].(node); ok {
					b.SOPInstanceUID = str(rn["ReferencedSOPInstanceUID"])
				}
			}
		}
	}
	pts, err := floats(s["GraphicData"])
	b.Points = pts
	b.Err = regionErr(*b, err)
}

// regionErr says why box b, whose points were read with error err, is not a usable box.
func regionErr(b Box, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("GraphicData: %w", err)
	case len(b.Points) == 0:
		return errors.New("image region has no GraphicData")
	case b.GraphicType != "POLYLINE":
		return fmt.Errorf("image region is %q, want POLYLINE", b.GraphicType)
	case len(b.Points)%2 != 0 || len(b.Points) < 6:
		return fmt.Errorf("POLYLINE GraphicData has %d values, want an even number of at least 6", len(b.Points))
	case b.SOPInstanceUID == "":
		return errors.New("image region references no image (no SELECTED FROM IMAGE item)")
	}
	if x0, y0, x1, y1 := b.Rect(); !(x1 > x0 && y1 > y0) {
		return fmt.Errorf("POLYLINE encloses no area (columns %g..%g, rows %g..%g)", x0, x1, y0, y1)
	}
	return nil
}

// seq returns a sequence attribute as a list of items. BigQuery returns a REPEATED RECORD as
// an array; a single object is accepted too.
func seq(n node, key string) []any {
	switch v := n[key].(type) {
	case []any:
		return v
	case node:
		return []any{v}
	}
	return nil
}

func code(n node, key string) Code {
	s := seq(n, key)
	if len(s) == 0 {
		return Code{}
	}
	c, ok := s[0].(node)
	if !ok {
		return Code{}
	}
	return Code{Value: str(c["CodeValue"]), Scheme: str(c["CodingSchemeDesignator"]), Meaning: str(c["CodeMeaning"])}
}

// str returns a scalar as a string: a number as the JSON writes it, the first
// element of a list is used (a multi-valued attribute read as one value).
func str(v any) string {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case json.Number:
		return x.String()
	case []any:
		if len(x) > 0 {
			return str(x[0])
		}
	}
	return ""
}

// floats reads a numeric list whose elements may be numbers or strings ("130.02"); BigQuery's
// TO_JSON_STRING writes FLOAT64 values as strings in some cases. A single string holding
// backslash-separated values (DICOM multi-value) is split.
func floats(v any) ([]float64, error) {
	var items []any
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		items = x
	case string:
		for _, p := range strings.Split(x, `\`) {
			if strings.TrimSpace(p) != "" {
				items = append(items, p)
			}
		}
	default:
		items = []any{x}
	}
	out := make([]float64, 0, len(items))
	for i, it := range items {
		f, err := number(it)
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", i, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func number(v any) (float64, error) {
	var f float64
	var err error
	switch x := v.(type) {
	case string:
		f, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
	case json.Number:
		f, err = strconv.ParseFloat(x.String(), 64)
	default:
		return 0, fmt.Errorf("not a number: %T", v)
	}
	if err != nil {
		return 0, err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a finite number: %v", v)
	}
	return f, nil
}
