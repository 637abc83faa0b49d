package dicomio

import (
	"bytes"
	"fmt"
	"os"
)

// The guard and the header pass on whole files in memory, for the tests of package
// dicomio_test: what ReadHeader does after its reads, without the reads.

// Check runs the guard on a whole file and names an unsupported transfer syntax as the reader
// does. Errors wrap ErrCorrupt or ErrUnsupported.
func Check(b []byte) error {
	w, err := guardWhole(b)
	if err != nil {
		return err
	}
	return checkTransferSyntax(w.ts)
}

// CheckFile is Check on the file at path, with the path in the error.
func CheckFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := Check(b); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	return nil
}

// ParseHeader is ReadHeader on bytes in memory.
func ParseHeader(b []byte) (SliceHeader, error) {
	h, _, err := readHeaderAt(bytes.NewReader(b), int64(len(b)))
	return h, err
}
