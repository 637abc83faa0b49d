package dicomio

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReadSeriesDir reads the headers (not the pixel data) of every file in dir, which must hold
// one series, and returns it in ITK order with the bytes read.
func ReadSeriesDir(dir string) (*Series, int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "DICOMDIR" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var hs []SliceHeader
	var total int64
	for i, n := range names {
		h, read, err := ReadHeader(filepath.Join(dir, n))
		total += read
		if err != nil {
			return nil, total, err
		}
		h.Index = i
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		return nil, total, fmt.Errorf("%s: no DICOM files", dir)
	}
	s, err := NewSeries(hs)
	if err != nil {
		return nil, total, fmt.Errorf("%s: %w", dir, err)
	}
	return s, total, nil
}
