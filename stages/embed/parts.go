package embed

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/tables"
)

// partStore is one model's committed batches: embed/parts/<model>/part-NNNNNN.arrow, each an
// embeddings table written atomically, so a part on disk is complete and its rows are done.
type partStore struct {
	dir string
	dim int
	mem memory.Allocator

	mu    sync.Mutex
	ids   map[string]bool
	next  int
	parts []string
}

func openParts(dir string, dim int, mem memory.Allocator) (*partStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create parts directory: %w", err)
	}
	p := &partStore{dir: dir, dim: dim, mem: mem, ids: map[string]bool{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list parts: %w", err)
	}
	for _, ent := range ents {
		seq, ok := partSeq(ent.Name())
		if !ok {
			continue // temp files of an interrupted write, and anything else
		}
		path := filepath.Join(dir, ent.Name())
		rows, _, err := tables.ReadEmbeddings(mem, path)
		if err != nil {
			return nil, fmt.Errorf("read part %s: %w", path, err)
		}
		for _, r := range rows {
			if len(r.Vector) != dim {
				return nil, fmt.Errorf("part %s: lesion %s has %d values, want %d (remove the stage directory or run without --resume)", path, r.LesionID, len(r.Vector), dim)
			}
			p.ids[r.LesionID] = true
		}
		p.parts = append(p.parts, path)
		p.next = max(p.next, seq+1)
	}
	sort.Strings(p.parts)
	return p, nil
}

func partSeq(name string) (int, bool) {
	if !strings.HasPrefix(name, "part-") || !strings.HasSuffix(name, ".arrow") {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "part-"), ".arrow"))
	return n, err == nil && n >= 0
}

func (p *partStore) done(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[id]
}

func (p *partStore) doneCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// commit writes rows as the next part; once it returns, the rows count as done.
func (p *partStore) commit(rows []tables.Embedding) error {
	p.mu.Lock()
	seq := p.next
	p.next++
	p.mu.Unlock()
	path := filepath.Join(p.dir, fmt.Sprintf("part-%06d.arrow", seq))
	if err := tables.WriteEmbeddingsPart(p.mem, path, rows, p.dim); err != nil {
		return fmt.Errorf("commit part: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.parts = append(p.parts, path)
	for _, r := range rows {
		p.ids[r.LesionID] = true
	}
	return nil
}

// assemble writes the model's table at path from all parts, one row per lesion in the given
// order (lesions without a row are left out), and returns the row count.
func (p *partStore) assemble(path string, order []string, dim int, md arrow.Metadata) (int, error) {
	p.mu.Lock()
	parts := append([]string(nil), p.parts...)
	p.mu.Unlock()
	byID := map[string]tables.Embedding{}
	for _, part := range parts {
		rows, _, err := tables.ReadEmbeddings(p.mem, part)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			if _, dup := byID[r.LesionID]; !dup {
				byID[r.LesionID] = r
			}
		}
	}
	out := make([]tables.Embedding, 0, len(byID))
	for _, id := range order {
		if r, ok := byID[id]; ok {
			out = append(out, r)
			delete(byID, id)
		}
	}
	return len(out), tables.WriteEmbeddings(p.mem, path, out, dim, md)
}
