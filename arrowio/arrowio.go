// Package arrowio reads and writes the pipeline's Arrow IPC tables: atomic writes, standard
// schema metadata, and whole-file reads.
package arrowio

import (
	"fmt"
	"io"
	"os"

	"connectome/atomicfile"

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

// Metadata builds schema metadata from the standard keys plus extra.
func Metadata(pipelineVersion, idcVersion, configHash string, extra map[string]string) arrow.Metadata {
	keys := []string{MetaPipelineVersion, MetaIDCVersion, MetaConfigHash}
	vals := []string{pipelineVersion, idcVersion, configHash}
	for k, v := range extra {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return arrow.NewMetadata(keys, vals)
}

// WithMetadata returns schema with md attached (fields unchanged).
func WithMetadata(schema *arrow.Schema, md arrow.Metadata) *arrow.Schema {
	return arrow.NewSchema(schema.Fields(), &md)
}

// WriteFile writes the batches (all with schema's fields) to path as one Arrow IPC file,
// atomically. An empty batch list writes a valid file with zero rows.
func WriteFile(path string, schema *arrow.Schema, batches ...arrow.RecordBatch) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema))
		if err != nil {
			return err
		}
		for i, b := range batches {
			if !b.Schema().Equal(schema) && !sameFields(b.Schema(), schema) {
				fw.Close()
				return fmt.Errorf("batch %d schema %v does not match %v", i, b.Schema(), schema)
			}
			if err := fw.Write(b); err != nil {
				fw.Close()
				return err
			}
		}
		return fw.Close()
	})
}

func sameFields(a, b *arrow.Schema) bool {
	if a.NumFields() != b.NumFields() {
		return false
	}
	for i := range a.Fields() {
		if !arrow.TypeEqual(a.Field(i).Type, b.Field(i).Type) || a.Field(i).Name != b.Field(i).Name {
			return false
		}
	}
	return true
}

// Table is a whole Arrow IPC file in memory. Release it when done.
type Table struct {
	Schema  *arrow.Schema
	Batches []arrow.RecordBatch
}

// NumRows is the total row count.
func (t *Table) NumRows() int64 {
	var n int64
	for _, b := range t.Batches {
		n += b.NumRows()
	}
	return n
}

// Meta returns the schema metadata value for key, or "".
func (t *Table) Meta(key string) string {
	md := t.Schema.Metadata()
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
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
