package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Ledger is a stage's per-item completion journal: one line per finished item, appended after
// the item's outputs are in place, so on resume a listed item is complete and an unlisted one
// is redone. A line cut short by a crash is ignored.
type Ledger struct {
	mu   sync.Mutex
	f    *os.File
	done map[string]bool
}

// OpenLedger opens (creating) the journal at path and loads the items already recorded.
func OpenLedger(path string) (*Ledger, error) {
	l := &Ledger{done: map[string]bool{}}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var partial bool
		for sc.Scan() {
			l.done[sc.Text()] = true
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read ledger %s: %w", path, err)
		}
		// Drop a last line without its newline: the write it came from did not finish.
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			partial = lastByte(path) != '\n'
		}
		if partial {
			if err := l.rewrite(path); err != nil {
				return nil, err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	l.f = f
	return l, nil
}

func lastByte(path string) byte {
	f, err := os.Open(path)
	if err != nil {
		return '\n'
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return '\n'
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil {
		return '\n'
	}
	return b[0]
}

// rewrite drops the cut last line from the journal.
func (l *Ledger) rewrite(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	last := -1
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			last = i
			break
		}
	}
	cut := string(data[last+1:])
	delete(l.done, cut)
	return os.WriteFile(path, data[:last+1], 0o644)
}

// Done reports whether id was recorded.
func (l *Ledger) Done(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done[id]
}

// Len is the number of recorded items.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// Mark records id as complete, durably.
func (l *Ledger) Mark(id string) error {
	if id == "" || strings.ContainsAny(id, "\n\r") {
		return fmt.Errorf("record %q in ledger: an item id must be one non-empty line", id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done[id] {
		return nil
	}
	if _, err := l.f.WriteString(id + "\n"); err != nil {
		return fmt.Errorf("record %s in ledger: %w", id, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync ledger: %w", err)
	}
	l.done[id] = true
	return nil
}

// Close closes the journal.
func (l *Ledger) Close() error { return l.f.Close() }
