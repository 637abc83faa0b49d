//go:build unix

package similarity

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mappedFile is a file mapped read-only into memory.
type mappedFile struct{ data []byte }

// mapFile maps f whole. The file must not change while it is mapped (the pipeline's files are
// written to a temp file and renamed, never rewritten in place).
func mapFile(f *os.File) (*mappedFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() <= 0 || st.Size() != int64(int(st.Size())) {
		return nil, fmt.Errorf("cannot map %d bytes", st.Size())
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &mappedFile{data: data}, nil
}

// drop gives the pages read so far back to the kernel: they leave this process's resident set
// (the page cache keeps them), and a later read maps them again.
func (m *mappedFile) drop() { _ = unix.Madvise(m.data, unix.MADV_DONTNEED) }

func (m *mappedFile) close() { _ = unix.Munmap(m.data) }
