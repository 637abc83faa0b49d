package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"connectome/internal/atomicfile"
)

// Output is one file a completed stage left in its directory, as its marker records it.
type Output struct {
	// Path is relative to the stage's directory (ShardDir), slash-separated.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// listOutputs records every file of stage directory dir: the engine's own files (the marker,
// the start record) and temp files left out, and, in a stage directory that is not itself a
// shard's, the shard directories inside it, which belong to other processes.
func listOutputs(dir string) ([]Output, error) {
	own := IsShardDir(filepath.Base(dir))
	out := []Output{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			if !own && p != dir && !strings.Contains(rel, "/") && IsShardDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == MarkerFile || rel == startedFile || atomicfile.IsTemp(e.Name()) || !e.Type().IsRegular() {
			return nil
		}
		size, sum, err := hashFile(p)
		if err != nil {
			return err
		}
		out = append(out, Output{Path: rel, Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the outputs of %s: %w", dir, err)
	}
	return out, nil
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// errNoOutputs: a marker written before markers listed their outputs cannot be checked.
var errNoOutputs = errors.New("the marker lists no outputs (written by an older version)")

// verifyOutputs checks that every output the marker m of stage directory dir lists is there
// with its size and SHA-256. The error names the first output that is missing or changed.
func verifyOutputs(dir string, m Marker) error {
	if m.Outputs == nil {
		return errNoOutputs
	}
	for _, o := range m.Outputs {
		if err := checkOutput(dir, o); err != nil {
			return err
		}
	}
	return nil
}

// outputsPresent checks that the outputs of m that want accepts exist: the check of another
// process's outputs (a shard's, read by the merge). Their content is the reading stage's to
// check (the config hash in each table), and a remote run directory's copy is checked
// against the object's CRC32C; want leaves out the work files a remote copy does not hold.
func outputsPresent(dir string, m Marker, want func(rel string) bool) error {
	if m.Outputs == nil {
		return errNoOutputs
	}
	for _, o := range m.Outputs {
		if !want(o.Path) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(o.Path))
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("output %s is missing", p)
		} else if err != nil {
			return fmt.Errorf("output %s: %w", p, err)
		}
	}
	return nil
}

// checkOutput checks one recorded output of stage directory dir.
func checkOutput(dir string, o Output) error {
	p := filepath.Join(dir, filepath.FromSlash(o.Path))
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("output %s is missing", p)
	case err != nil:
		return fmt.Errorf("output %s: %w", p, err)
	case fi.Size() != o.Size:
		return fmt.Errorf("output %s has %d bytes, its marker says %d", p, fi.Size(), o.Size)
	}
	_, sum, err := hashFile(p)
	if err != nil {
		return fmt.Errorf("output %s: %w", p, err)
	}
	if sum != o.SHA256 {
		return fmt.Errorf("output %s changed since its stage completed (sha256 %.12s, its marker says %.12s)", p, sum, o.SHA256)
	}
	return nil
}

// dropChanged removes the outputs of m that are no longer what the marker records, so that
// the stage, run again on its kept directory, redoes them instead of trusting a damaged file
// (a stage keeps a resumed attempt's files that exist).
func dropChanged(dir string, m Marker) error {
	for _, o := range m.Outputs {
		if checkOutput(dir, o) == nil {
			continue
		}
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(o.Path))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
