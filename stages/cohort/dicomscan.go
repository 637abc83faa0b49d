package cohort

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"golang.org/x/sync/errgroup"

	"connectome/pipeline"
	"connectome/tables"
)

// scanResult is what a header pass over a DICOM folder found.
type scanResult struct {
	series  map[string][]*tables.Instance // CT series UID → its instances
	study   map[string]studyInfo          // CT series UID → study
	files   int
	skipped int // not DICOM, not an image with geometry, or unreadable
}

type studyInfo struct{ studyUID, studyDate string }

// scanDICOMDir reads the header of every file under dir (pixel data skipped) and groups the
// image instances by series. Files that are not DICOM images are skipped; a missing folder
// halts.
func scanDICOMDir(ctx context.Context, dir string, workers int) (*scanResult, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, pipeline.Haltf("cohort: read dicom_dir: %w", err)
	}
	res := &scanResult{series: map[string][]*tables.Instance{}, study: map[string]studyInfo{}, files: len(paths)}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for _, p := range paths {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			in, st, err := readHeader(p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.skipped++
				return nil
			}
			res.series[in.SeriesInstanceUID] = append(res.series[in.SeriesInstanceUID], in)
			res.study[in.SeriesInstanceUID] = st
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

// readHeader reads one file's image-plane header. It fails for a non-DICOM file or one
// without the geometry of an image slice.
func readHeader(path string) (*tables.Instance, studyInfo, error) {
	ds, err := dicom.ParseFile(path, nil, dicom.SkipPixelData())
	if err != nil {
		return nil, studyInfo{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	in := &tables.Instance{LocalPath: abs}
	if fi, err := os.Stat(path); err == nil {
		in.InstanceSize = fi.Size()
	}
	in.SeriesInstanceUID = strVal(&ds, tag.SeriesInstanceUID)
	in.SOPInstanceUID = strVal(&ds, tag.SOPInstanceUID)
	if in.SeriesInstanceUID == "" || in.SOPInstanceUID == "" {
		return nil, studyInfo{}, fmt.Errorf("%s: no series or SOP instance UID", path)
	}
	if n, err := strconv.Atoi(strVal(&ds, tag.InstanceNumber)); err == nil {
		in.InstanceNumber = int32(n)
	}
	ipp, err1 := floatVals(&ds, tag.ImagePositionPatient, 3)
	iop, err2 := floatVals(&ds, tag.ImageOrientationPatient, 6)
	ps, err3 := floatVals(&ds, tag.PixelSpacing, 2)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, studyInfo{}, fmt.Errorf("%s: no image-plane geometry", path)
	}
	copy(in.ImagePositionPatient[:], ipp)
	copy(in.ImageOrientationPatient[:], iop)
	copy(in.PixelSpacing[:], ps)
	in.Rows = int32(intVal(&ds, tag.Rows))
	in.Columns = int32(intVal(&ds, tag.Columns))
	return in, studyInfo{studyUID: strVal(&ds, tag.StudyInstanceUID), studyDate: strVal(&ds, tag.StudyDate)}, nil
}

func strVal(ds *dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return ""
	}
	switch v := e.Value.GetValue().(type) {
	case []string:
		if len(v) > 0 {
			return strings.TrimSpace(strings.TrimRight(v[0], "\x00"))
		}
	case []int:
		if len(v) > 0 {
			return strconv.Itoa(v[0])
		}
	}
	return ""
}

func intVal(ds *dicom.Dataset, t tag.Tag) int {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return 0
	}
	switch v := e.Value.GetValue().(type) {
	case []int:
		if len(v) > 0 {
			return v[0]
		}
	case []string:
		if len(v) > 0 {
			n, _ := strconv.Atoi(strings.TrimSpace(v[0]))
			return n
		}
	}
	return 0
}

// floatVals reads a DS (or FD) attribute with exactly n values.
func floatVals(ds *dicom.Dataset, t tag.Tag, n int) ([]float64, error) {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return nil, fmt.Errorf("missing %v", t)
	}
	var out []float64
	switch v := e.Value.GetValue().(type) {
	case []string:
		for _, s := range v {
			for _, p := range strings.Split(s, `\`) {
				f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimRight(p, "\x00")), 64)
				if err != nil {
					return nil, err
				}
				out = append(out, f)
			}
		}
	case []float64:
		out = v
	}
	if len(out) != n {
		return nil, fmt.Errorf("%v has %d values, want %d", t, len(out), n)
	}
	return out, nil
}
