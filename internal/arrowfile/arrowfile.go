// Package arrowfile writes the pipeline's tables: Arrow IPC files written atomically, each with
// a Parquet copy beside it (same rows, same schema metadata) for DuckDB, BigQuery and Spark,
// or without one for a stage's own work files. It sits below the engine (package pipeline,
// which writes failures.arrow) and the tables package, so both write the same files.
package arrowfile

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"connectome/internal/atomicfile"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// WriteFile writes a table of the run: the batches (all with schema's fields) as one Arrow IPC
// file at path and, beside it, the same rows as Parquet (ParquetPath), with the same schema
// metadata, so that DuckDB, BigQuery and Spark load the table directly. Each file is written
// atomically, the Parquet copy first, so an Arrow table is never there without its copy. An
// empty batch list writes valid files with zero rows.
func WriteFile(path string, schema *arrow.Schema, batches ...arrow.RecordBatch) error {
	if err := checkBatches(schema, batches); err != nil {
		return err
	}
	return WriteStream(memory.DefaultAllocator, path, schema, true, writeAll(batches))
}

// WriteWorkFile writes the batches as an Arrow IPC file only: for the files a stage writes for
// itself and reads back (embed's committed parts, preprocess's per-lesion records), which no
// user opens and which would only double in size with a copy.
func WriteWorkFile(path string, schema *arrow.Schema, batches ...arrow.RecordBatch) error {
	if err := checkBatches(schema, batches); err != nil {
		return err
	}
	return WriteStream(memory.DefaultAllocator, path, schema, false, writeAll(batches))
}

// ParquetPath is where WriteFile puts the Parquet copy of the table at path: the same name
// with .parquet for .arrow.
func ParquetPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".parquet"
}

// IsParquetCopy reports whether a file of a stage directory is the Parquet copy of a table:
// for readers of the run; the stages themselves, a merge included, read the Arrow file.
func IsParquetCopy(name string) bool { return filepath.Ext(name) == ".parquet" }

func checkBatches(schema *arrow.Schema, batches []arrow.RecordBatch) error {
	for i, b := range batches {
		if !b.Schema().Equal(schema) && !sameFields(b.Schema(), schema) {
			return fmt.Errorf("batch %d schema %v does not match %v", i, b.Schema(), schema)
		}
	}
	return nil
}

func writeAll(batches []arrow.RecordBatch) func(write func(arrow.RecordBatch) error) error {
	return func(write func(arrow.RecordBatch) error) error {
		for _, b := range batches {
			if err := write(b); err != nil {
				return err
			}
		}
		return nil
	}
}

// WriteStream writes path (and, with parquetCopy, its Parquet copy) from the batches fill
// writes, one at a time, so that a streamed table is never whole in memory. The Parquet copy
// is renamed into place before the Arrow file; when fill fails, neither file changes.
func WriteStream(mem memory.Allocator, path string, schema *arrow.Schema, parquetCopy bool, fill func(write func(arrow.RecordBatch) error) error) error {
	return atomicfile.Write(path, func(aw io.Writer) error {
		if !parquetCopy {
			return writeBatches(mem, aw, nil, schema, fill)
		}
		return atomicfile.Write(ParquetPath(path), func(pw io.Writer) error {
			return writeBatches(mem, aw, pw, schema, fill)
		})
	})
}

// writeBatches writes the batches as Arrow IPC to aw and, when pw is not nil, as Parquet to pw:
// one row group per batch, Snappy (which every Parquet reader has), the schema metadata as the
// file's key-value metadata (what DuckDB's parquet_kv_metadata and BigQuery see) and the Arrow
// schema itself (ARROW:schema), so that Arrow readers get back the exact types,
// fixed_size_list included.
func writeBatches(mem memory.Allocator, aw, pw io.Writer, schema *arrow.Schema, fill func(write func(arrow.RecordBatch) error) error) error {
	iw, err := ipc.NewFileWriter(aw, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err != nil {
		return err
	}
	var qw *pqarrow.FileWriter
	if pw != nil {
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithAllocator(mem))
		qw, err = pqarrow.NewFileWriter(schema, pw, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
		if err != nil {
			iw.Close()
			return fmt.Errorf("parquet schema: %w", err)
		}
	}
	err = fill(func(b arrow.RecordBatch) error {
		if err := iw.Write(b); err != nil {
			return err
		}
		if qw != nil {
			return qw.Write(b)
		}
		return nil
	})
	// Close both writers whatever happened (they hold buffers); the first error wins.
	if cerr := iw.Close(); err == nil {
		err = cerr
	}
	if qw != nil {
		if cerr := qw.Close(); err == nil {
			err = cerr
		}
	}
	return err
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
