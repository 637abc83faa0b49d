package cohort

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"connectome/internal/dicomio"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// scanResult is what a header pass over a DICOM folder found.
type scanResult struct {
	series map[string][]*tables.Instance // CT series UID → its instances
	study  map[string]studyInfo          // CT series UID → study
	files  int
	// skipped files are not DICOM images (a README, an SR, a DICOMDIR); unreadable ones look
	// like DICOM images but cannot be used (truncated, empty, compressed, not CT), by folder.
	skipped    int
	unreadable map[string][]badFile
	// badOf holds the unusable files whose series the reader could still tell (not CT,
	// compressed), by series UID.
	badOf map[string][]badFile
}

type studyInfo struct{ studyUID, studyDate string }

// badFile is a file of the folder that looks like a slice but cannot be read, and why.
type badFile struct {
	path string
	err  error
}

// scanDICOMDir reads the header of every file under dir (pixel data skipped) through the
// guarded reader (dicomio: bounded lengths and nesting, recovery) and groups the image
// instances by series. Files that are not DICOM images are skipped; a missing folder halts.
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
		return nil, pipeline.Haltf("read dicom_dir: %w", err)
	}
	res := &scanResult{series: map[string][]*tables.Instance{}, study: map[string]studyInfo{},
		files: len(paths), unreadable: map[string][]badFile{}, badOf: map[string][]badFile{}}
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
				if unusable(p, err) {
					d, b := filepath.Dir(in.LocalPath), badFile{in.LocalPath, err}
					res.unreadable[d] = append(res.unreadable[d], b)
					if in.SeriesInstanceUID != "" {
						res.badOf[in.SeriesInstanceUID] = append(res.badOf[in.SeriesInstanceUID], b)
					}
				}
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

// unusable says whether a file that failed the header pass is a broken slice rather than
// some other file: empty (an interrupted copy), a DICOM file with the DICM prefix, or one the
// reader recognised as an image it cannot use.
func unusable(path string, err error) bool {
	if errors.Is(err, dicomio.ErrCorrupt) || errors.Is(err, dicomio.ErrUnsupported) || errors.Is(err, dicomio.ErrNotCT) {
		return true
	}
	f, oerr := os.Open(path)
	if oerr != nil {
		return true
	}
	defer f.Close()
	var b [132]byte
	n, _ := f.Read(b[:])
	return n == 0 || (n == len(b) && string(b[128:]) == "DICM" && !errors.Is(err, dicomio.ErrNoPixelData))
}

// readHeader reads one file's image-plane header. It fails for a non-DICOM file or one
// without the geometry of an image slice; in.LocalPath is set either way.
func readHeader(path string) (*tables.Instance, studyInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	in := &tables.Instance{LocalPath: abs}
	h, _, err := dicomio.ReadHeader(path)
	if err != nil {
		in.SeriesInstanceUID = h.SeriesInstanceUID // known for some unusable images
		return in, studyInfo{}, err
	}
	if h.SeriesInstanceUID == "" || h.SOPInstanceUID == "" {
		return in, studyInfo{}, fmt.Errorf("%s: no series or SOP instance UID", path)
	}
	if fi, err := os.Stat(path); err == nil {
		in.InstanceSize = fi.Size()
	}
	in.SeriesInstanceUID, in.SOPInstanceUID = h.SeriesInstanceUID, h.SOPInstanceUID
	in.InstanceNumber = int32(h.InstanceNumber)
	in.ImagePositionPatient, in.ImageOrientationPatient, in.PixelSpacing = h.IPP, h.IOP, h.PixelSpacing
	in.Rows, in.Columns = int32(h.Rows), int32(h.Columns)
	return in, studyInfo{studyUID: h.StudyInstanceUID, studyDate: h.StudyDate}, nil
}

// badNear returns the unreadable files in the folders of the series' instances.
func (r *scanResult) badNear(ins []*tables.Instance) []badFile {
	seen := map[string]bool{}
	var out []badFile
	for _, in := range ins {
		d := filepath.Dir(in.LocalPath)
		if !seen[d] {
			seen[d] = true
			out = append(out, r.unreadable[d]...)
		}
	}
	return out
}

// describe gives the error of the first of bad files and counts the rest.
func describe(bad []badFile) string {
	slices.SortFunc(bad, func(a, b badFile) int { return strings.Compare(a.path, b.path) })
	s := bad[0].err.Error() // the reader's errors name the file
	if len(bad) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(bad)-1)
	}
	return s
}
