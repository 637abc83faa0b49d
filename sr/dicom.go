package sr

import (
	"fmt"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// FromDataset reads the measurement groups of an SR dataset read with suyashkumar/dicom.
func FromDataset(ds *dicom.Dataset) ([]Box, error) {
	e, err := ds.FindElementByTag(tag.ContentSequence)
	if err != nil {
		return nil, ErrNoContent
	}
	return boxesFromTree(sequenceItems(e, 0))
}

// EvidenceFromDataset returns the series UIDs in CurrentRequestedProcedureEvidenceSequence.
func EvidenceFromDataset(ds *dicom.Dataset) ([]string, error) {
	e, err := ds.FindElementByTag(tag.CurrentRequestedProcedureEvidenceSequence)
	if err != nil {
		return nil, fmt.Errorf("SR has no CurrentRequestedProcedureEvidenceSequence")
	}
	var out []string
	for _, s := range sequenceItems(e, 0) {
		for _, r := range seq(s.(node), "ReferencedSeriesSequence") {
			if uid := str(r.(node)["SeriesInstanceUID"]); uid != "" {
				out = append(out, uid)
			}
		}
	}
	return out, nil
}

// sequenceItems converts a sequence element into the walker's generic tree.
func sequenceItems(e *dicom.Element, depth int) []any {
	items, ok := e.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok || depth > maxDepth {
		return nil
	}
	out := make([]any, 0, len(items))
	for _, it := range items {
		elems, _ := it.GetValue().([]*dicom.Element)
		out = append(out, toNode(elems, depth+1))
	}
	return out
}

func toNode(elems []*dicom.Element, depth int) node {
	n := node{}
	for _, e := range elems {
		info, err := tag.Find(e.Tag)
		if err != nil || e.Value == nil {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []*dicom.SequenceItemValue:
			n[info.Keyword] = sequenceItems(e, depth)
		case []string:
			n[info.Keyword] = listOf(v)
		case []int:
			n[info.Keyword] = listOf(v)
		case []float64:
			n[info.Keyword] = listOf(v)
		}
	}
	return n
}

func listOf[T any](v []T) any {
	if len(v) == 1 {
		return v[0]
	}
	out := make([]any, len(v))
	for i := range v {
		out[i] = v[i]
	}
	return out
}
