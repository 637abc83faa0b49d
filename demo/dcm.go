package demo

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// SOP classes and the transfer syntax the generator writes.
const (
	sopCTImage           = "1.2.840.10008.5.1.4.1.1.2"
	sopComprehensive3DSR = "1.2.840.10008.5.1.4.1.1.88.34"
	explicitVRLittle     = "1.2.840.10008.1.2.1"
	// implementationUID identifies the writer in the file meta (2.25 root, fixed).
	implementationUID = "2.25.329800735698586629295641978511506172918"
)

// elems collects DICOM elements and keeps the first error, so a dataset reads as a list.
type elems struct {
	list []*dicom.Element
	err  error
}

// add appends an element. v may be a string, int, float64 (written as the tag's VR wants:
// DS and IS as decimal strings), a []string, []int, []float64, []byte, or [][]*dicom.Element
// for a sequence (use item to build each item).
func (e *elems) add(t tag.Tag, v any) {
	if e.err != nil {
		return
	}
	info, err := tag.Find(t)
	if err != nil {
		e.err = fmt.Errorf("tag %v: %w", t, err)
		return
	}
	vr := info.VRs[0]
	switch x := v.(type) {
	case string:
		v = []string{x}
	case int:
		if vr == "IS" {
			v = []string{strconv.Itoa(x)}
		} else {
			v = []int{x}
		}
	case float64:
		if vr == "DS" {
			v = []string{ds(x)}
		} else {
			v = []float64{x}
		}
	case []float64:
		if vr == "DS" {
			s := make([]string, len(x))
			for i, f := range x {
				s[i] = ds(f)
			}
			v = s
		}
	}
	el, err := dicom.NewElement(t, v)
	if err != nil {
		e.err = fmt.Errorf("element %s: %w", info.Keyword, err)
		return
	}
	e.list = append(e.list, el)
}

// sorted returns the elements in ascending tag order: suyashkumar/dicom writes elements in
// slice order, and DICOM requires ascending order (toolchain.md §5).
func (e *elems) sorted() ([]*dicom.Element, error) {
	if e.err != nil {
		return nil, e.err
	}
	out := slices.Clone(e.list)
	slices.SortStableFunc(out, func(a, b *dicom.Element) int {
		if a.Tag.Group != b.Tag.Group {
			return int(a.Tag.Group) - int(b.Tag.Group)
		}
		return int(a.Tag.Element) - int(b.Tag.Element)
	})
	return out, nil
}

// item builds one sequence item from a function that adds its elements; an error in the item
// becomes e's error.
func (e *elems) item(fill func(it *elems)) []*dicom.Element {
	var it elems
	fill(&it)
	out, err := it.sorted()
	if err != nil && e.err == nil {
		e.err = err
	}
	return out
}

// seq adds a sequence of the given items.
func (e *elems) seq(t tag.Tag, items ...[]*dicom.Element) {
	if items == nil {
		items = [][]*dicom.Element{}
	}
	e.add(t, items)
}

// code adds a one-item code sequence (CodeValue, CodingSchemeDesignator, CodeMeaning).
func (e *elems) code(t tag.Tag, value, scheme, meaning string) {
	e.seq(t, e.item(func(it *elems) {
		it.add(tag.CodeValue, value)
		it.add(tag.CodingSchemeDesignator, scheme)
		it.add(tag.CodeMeaning, meaning)
	}))
}

// ds writes a decimal string of at most 16 characters.
func ds(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if len(s) <= 16 {
		return s
	}
	return strconv.FormatFloat(f, 'g', 10, 64)
}

// writeDataset writes a Part 10 file: the meta group, then the dataset in tag order.
func writeDataset(w io.Writer, e *elems, sopClass, sopInstance string) error {
	e.add(tag.FileMetaInformationVersion, []byte{0, 1})
	e.add(tag.MediaStorageSOPClassUID, sopClass)
	e.add(tag.MediaStorageSOPInstanceUID, sopInstance)
	e.add(tag.TransferSyntaxUID, explicitVRLittle)
	e.add(tag.ImplementationClassUID, implementationUID)
	list, err := e.sorted()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if err := dicom.Write(bw, dicom.Dataset{Elements: list}); err != nil {
		return err
	}
	return bw.Flush()
}
