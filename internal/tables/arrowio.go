// The pipeline's tables: standard schema metadata and whole-file reads (the writer, with its
// Parquet copies, is package arrowfile).

package tables

import (
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Standard schema metadata keys carried by every table (design §4).
const (
	MetaPipelineVersion = "connectome.pipeline_version"
	MetaIDCVersion      = "connectome.idc_version"
	MetaConfigHash      = "connectome.config_hash"
)

// Metadata builds schema metadata from the standard keys plus extra, in sorted key order so
// that the same table is the same bytes in every run.
func Metadata(pipelineVersion, idcVersion, configHash string, extra map[string]string) arrow.Metadata {
	keys := []string{MetaPipelineVersion, MetaIDCVersion, MetaConfigHash}
	vals := []string{pipelineVersion, idcVersion, configHash}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		keys = append(keys, k)
		vals = append(vals, extra[k])
	}
	return arrow.NewMetadata(keys, vals)
}

// Table is a whole Arrow IPC file in memory. Release it when done.
type Table struct {
	Schema  *arrow.Schema
	Batches []arrow.RecordBatch
}

// Release frees the batches.
func (t *Table) Release() {
	for _, b := range t.Batches {
		b.Release()
	}
	t.Batches = nil
}

// ReadFile reads a whole Arrow IPC file.
func ReadFile(path string, mem memory.Allocator) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem))
	if err != nil {
		return nil, fmt.Errorf("read arrow file %s: %w", path, err)
	}
	defer r.Close()
	t := &Table{Schema: r.Schema()}
	for i := 0; i < r.NumRecords(); i++ {
		b, err := r.RecordBatch(i)
		if err != nil {
			t.Release()
			return nil, fmt.Errorf("read arrow file %s batch %d: %w", path, i, err)
		}
		b.Retain()
		t.Batches = append(t.Batches, b)
	}
	return t, nil
}
