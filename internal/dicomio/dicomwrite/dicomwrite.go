// Package dicomwrite builds and writes DICOM Part 10 files that pydicom, dcmtk and our
// reader accept: the demo's CT slices and SRs, and the test series of dicomsynth.
package dicomwrite

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// CTImageStorage is the SOP class of a CT image.
const CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// ImplementationClassUID identifies this writer in the file meta of every file (2.25 root,
// fixed).
const ImplementationClassUID = "2.25.329800735698586629295641978511506172918"

// Dataset collects DICOM elements and keeps the first error, so that a dataset reads as a
// list of Add calls.
type Dataset struct {
	list []*dicom.Element
	err  error
}

// Add appends an element. v may be a string, int, float64 (written as the tag's VR wants:
// DS and IS as decimal strings), a []string, []int, []float64, []byte, a
// dicom.PixelDataInfo, or [][]*dicom.Element for a sequence (Item builds each item).
func (d *Dataset) Add(t tag.Tag, v any) {
	if d.err != nil {
		return
	}
	info, err := tag.Find(t)
	if err != nil {
		d.err = fmt.Errorf("tag %v: %w", t, err)
		return
	}
	el, err := dicom.NewElement(t, asVR(v, info.VRs[0]))
	if err != nil {
		d.err = fmt.Errorf("element %s: %w", info.Keyword, err)
		return
	}
	d.list = append(d.list, el)
}

// asVR converts Go scalars to the value type the library wants for vr.
func asVR(v any, vr string) any {
	switch x := v.(type) {
	case string:
		return []string{x}
	case int:
		if vr == "IS" {
			return []string{strconv.Itoa(x)}
		}
		return []int{x}
	case float64:
		if vr == "DS" {
			return []string{DS(x)}
		}
		return []float64{x}
	case []float64:
		if vr == "DS" {
			s := make([]string, len(x))
			for i, f := range x {
				s[i] = DS(f)
			}
			return s
		}
	}
	return v
}

// Item builds one sequence item from a function that adds its elements; an error in the item
// becomes d's error.
func (d *Dataset) Item(fill func(it *Dataset)) []*dicom.Element {
	var it Dataset
	fill(&it)
	out, err := it.Elements()
	if err != nil && d.err == nil {
		d.err = err
	}
	return out
}

// Seq adds a sequence of the given items.
func (d *Dataset) Seq(t tag.Tag, items ...[]*dicom.Element) {
	if items == nil {
		items = [][]*dicom.Element{}
	}
	d.Add(t, items)
}

// Code adds a one-item code sequence (CodeValue, CodingSchemeDesignator, CodeMeaning).
func (d *Dataset) Code(t tag.Tag, value, scheme, meaning string) {
	d.Seq(t, d.Item(func(it *Dataset) {
		it.Add(tag.CodeValue, value)
		it.Add(tag.CodingSchemeDesignator, scheme)
		it.Add(tag.CodeMeaning, meaning)
	}))
}

// FileMeta adds the file meta information of a Part 10 file.
func (d *Dataset) FileMeta(sopClass, sopInstance, transferSyntax string) {
	d.Add(tag.FileMetaInformationVersion, []byte{0, 1})
	d.Add(tag.MediaStorageSOPClassUID, sopClass)
	d.Add(tag.MediaStorageSOPInstanceUID, sopInstance)
	d.Add(tag.TransferSyntaxUID, transferSyntax)
	d.Add(tag.ImplementationClassUID, ImplementationClassUID)
}

// Elements returns the elements in ascending tag order, or the first error of an Add.
func (d *Dataset) Elements() ([]*dicom.Element, error) {
	if d.err != nil {
		return nil, d.err
	}
	return sorted(d.list), nil
}

// Write writes d as a Part 10 file: its file meta, then the dataset in tag order.
func (d *Dataset) Write(w io.Writer, sopClass, sopInstance, transferSyntax string) error {
	d.FileMeta(sopClass, sopInstance, transferSyntax)
	list, err := d.Elements()
	if err != nil {
		return err
	}
	return WriteElements(w, list)
}

// WriteElements writes elements (file meta included) as a Part 10 file, in tag order: the
// library writes elements in slice order, and DICOM requires ascending order
// (toolchain.md §5).
func WriteElements(w io.Writer, elems []*dicom.Element) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	if err := dicom.Write(bw, dicom.Dataset{Elements: sorted(elems)}); err != nil {
		return err
	}
	return bw.Flush()
}

func sorted(elems []*dicom.Element) []*dicom.Element {
	out := slices.Clone(elems)
	slices.SortStableFunc(out, func(a, b *dicom.Element) int {
		if a.Tag.Group != b.Tag.Group {
			return int(a.Tag.Group) - int(b.Tag.Group)
		}
		return int(a.Tag.Element) - int(b.Tag.Element)
	})
	return out
}

// DS formats a decimal string (DS allows 16 characters): the shortest exact form when it
// fits, else 10 significant digits. The demo's files, and so its tables, depend on this.
func DS(v float64) string {
	if s := strconv.FormatFloat(v, 'f', -1, 64); len(s) <= 16 {
		return s
	}
	return strconv.FormatFloat(v, 'g', 10, 64)
}
