//go:build !unix

package similarity

import (
	"errors"
	"os"
)

// mappedFile is unused where there is no mmap: readArrow then takes the copying reader.
type mappedFile struct{ data []byte }

func mapFile(*os.File) (*mappedFile, error) { return nil, errors.ErrUnsupported }
func (m *mappedFile) drop()                 {}
func (m *mappedFile) close()                {}
