package sr

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio"
)

// Tree turns DICOM elements into keyword → value, the shape IDC's dicom_all gives them in
// BigQuery: values as []string, []int or []float64, sequences as []any of nested maps. File
// meta elements (group 0002), private and unknown tags are left out, as in IDC's export.
func Tree(elems []*dicom.Element) map[string]any { return tree(elems, 0) }

func tree(elems []*dicom.Element, depth int) map[string]any {
	out := map[string]any{}
	if depth > maxDepth {
		return out
	}
	for _, e := range elems {
		info, err := tag.Find(e.Tag)
		if err != nil || e.Value == nil || e.Tag.Group == 0x0002 {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []*dicom.SequenceItemValue:
			items := make([]any, 0, len(v))
			for _, it := range v {
				sub, _ := it.GetValue().([]*dicom.Element)
				items = append(items, tree(sub, depth+1))
			}
			out[info.Keyword] = items
		case []string, []int, []float64:
			out[info.Keyword] = v
		}
	}
	return out
}

// Document is what the cohort stage reads of one SR object: its three sequences as the JSON
// that BigQuery's TO_JSON_STRING returns for the dicom_all columns of the same names, so that
// an SR read from its file and one read from BigQuery go through the same parsers
// (Evidence, ParseJSON).
type Document struct {
	SOPInstanceUID  string
	Evidence        []byte // CurrentRequestedProcedureEvidenceSequence
	ContentTemplate []byte // ContentTemplateSequence
	Content         []byte // ContentSequence
}

// ReadDICOM reads an SR object (a whole DICOM Part 10 file) into a Document. dicomio's
// length guard runs first: the DICOM library allocates what a length field says before
// reading it, and an SR object is read whole.
func ReadDICOM(b []byte) (doc Document, err error) {
	if err := dicomio.Guard(b); err != nil {
		return Document{}, fmt.Errorf("SR object: %w", err)
	}
	defer func() {
		// the DICOM library panics on some malformed input: that is a bad object, not a crash
		if p := recover(); p != nil {
			doc, err = Document{}, fmt.Errorf("malformed DICOM: %v", p)
		}
	}()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipPixelData())
	if err != nil {
		return Document{}, fmt.Errorf("parse SR object: %w", err)
	}
	t := Tree(ds.Elements)
	if uid, ok := t["SOPInstanceUID"].([]string); ok && len(uid) > 0 {
		doc.SOPInstanceUID = uid[0]
	}
	for _, f := range []struct {
		keyword string
		dst     *[]byte
	}{
		{"CurrentRequestedProcedureEvidenceSequence", &doc.Evidence},
		{"ContentTemplateSequence", &doc.ContentTemplate},
		{"ContentSequence", &doc.Content},
	} {
		// an absent sequence is JSON null, as BigQuery gives a NULL column
		if *f.dst, err = json.Marshal(bigQueryShape(t[f.keyword])); err != nil {
			return Document{}, fmt.Errorf("SR %s as JSON: %w", f.keyword, err)
		}
	}
	return doc, nil
}

// bigQueryShape gives a Tree value the shape of its BigQuery column: a single value as a
// scalar (dicom_all has a STRING or FLOAT64 column for an attribute of one value), several
// as a list (a REPEATED column), sequences as lists of items.
func bigQueryShape(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = bigQueryShape(it)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, it := range x {
			out[k] = bigQueryShape(it)
		}
		return out
	case []string:
		return single(x)
	case []int:
		return single(x)
	case []float64:
		return single(x)
	}
	return v
}

func single[T any](x []T) any {
	if len(x) == 1 {
		return x[0]
	}
	return x
}
