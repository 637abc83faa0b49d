package sr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ParseJSON reads the JSON of an SR's ContentSequence as BigQuery returns it from
// TO_JSON_STRING(ContentSequence) on IDC's dicom_all: an array of content items whose keys are
// DICOM keywords (in any order), numbers possibly written as strings, absent values as null.
// It returns every measurement group; see Box.Err for groups that are not usable.
func ParseJSON(data []byte) ([]Box, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parse SR content JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse SR content JSON: trailing data after the content array")
	}
	var content []any
	switch x := v.(type) {
	case nil:
		return nil, ErrNoContent
	case []any:
		content = x
	case node:
		// A whole root item (with its own ContentSequence) is accepted too.
		content = []any{x}
	default:
		return nil, fmt.Errorf("parse SR content JSON: want an array of content items, got %T", v)
	}
	return boxesFromTree(content)
}

// Evidence reads TO_JSON_STRING(CurrentRequestedProcedureEvidenceSequence) and returns the
// referenced series UIDs in order (NLST-Sybil SRs reference exactly one CT series).
func Evidence(data []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parse SR evidence JSON: %w", err)
	}
	var out []string
	var studies []any
	switch x := v.(type) {
	case []any:
		studies = x
	case node:
		studies = []any{x}
	}
	for _, s := range studies {
		sn, ok := s.(node)
		if !ok {
			continue
		}
		for _, r := range seq(sn, "ReferencedSeriesSequence") {
			if rn, ok := r.(node); ok {
				if uid := str(rn["SeriesInstanceUID"]); uid != "" {
					out = append(out, uid)
				}
			}
		}
	}
	return out, nil
}
