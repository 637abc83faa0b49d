// Package tables holds the row types of the pipeline's shared Arrow tables (design §4) and
// their Arrow readers and writers, so that every stage reads a table the same way.
package tables

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// column finds a named column of batch b, with the type the reader expects.
func column[T arrow.Array](b arrow.RecordBatch, name string) (T, error) {
	var zero T
	idx := b.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return zero, fmt.Errorf("missing column %q", name)
	}
	col, ok := b.Column(idx[0]).(T)
	if !ok {
		return zero, fmt.Errorf("column %q has type %s, want %T", name, b.Column(idx[0]).DataType(), zero)
	}
	return col, nil
}

// optionalColumn is column for a column that may be absent (ok=false then).
func optionalColumn[T arrow.Array](b arrow.RecordBatch, name string) (T, bool, error) {
	var zero T
	if len(b.Schema().FieldIndices(name)) == 0 {
		return zero, false, nil
	}
	c, err := column[T](b, name)
	return c, err == nil, err
}

// readBatches reads path and calls each for every batch; the table is released afterwards.
func readBatches(path string, each func(b arrow.RecordBatch) error) (arrow.Metadata, error) {
	t, err := ReadFile(path, memory.DefaultAllocator)
	if err != nil {
		return arrow.Metadata{}, err
	}
	defer t.Release()
	for _, b := range t.Batches {
		if err := each(b); err != nil {
			return arrow.Metadata{}, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return t.Schema.Metadata(), nil
}

// fixedFloat64 reads row i of a fixed_size_list<float64> column into dst.
func fixedFloat64(col *array.FixedSizeList, i int, dst []float64) {
	vals := col.ListValues().(*array.Float64)
	start, _ := col.ValueOffsets(i)
	for k := range dst {
		dst[k] = vals.Value(int(start) + k)
	}
}

func appendFixedFloat64(b *array.FixedSizeListBuilder, v []float64) {
	b.Append(true)
	vb := b.ValueBuilder().(*array.Float64Builder)
	vb.AppendValues(v, nil)
}
