package tables

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Schema metadata keys of embeddings/<model>.arrow, beside arrowio's standard keys.
const (
	MetaModel         = "connectome.model"
	MetaModelSHA256   = "connectome.model_sha256"
	MetaPreprocessing = "connectome.preprocessing" // the model's preprocessing parameters as JSON
	MetaEmbeddingDim  = "connectome.embedding_dim"
)

// Embedding is one row of embeddings/<model>.arrow: one lesion seen by one model.
type Embedding struct {
	LesionID  string
	PatientID string
	Model     string
	Vector    []float32
}

// EmbeddingsSchema is the schema of an embeddings table of dimension dim (design §4).
func EmbeddingsSchema(dim int, md arrow.Metadata) *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "lesion_id", Type: arrow.BinaryTypes.String},
		{Name: "patient_id", Type: arrow.BinaryTypes.String},
		{Name: "model", Type: arrow.BinaryTypes.String},
		{Name: "embedding", Type: arrow.FixedSizeListOf(int32(dim), arrow.PrimitiveTypes.Float32)},
	}, &md)
}

// WriteEmbeddings writes rows (every vector of length dim) to path atomically, with its Parquet
// copy, allocating from mem.
func WriteEmbeddings(mem memory.Allocator, path string, rows []Embedding, dim int, md arrow.Metadata) error {
	return writeEmbeddings(mem, path, rows, dim, md, arrowfile.WriteFile)
}

// WriteEmbeddingsPart writes rows as a work file of the embed stage (a committed part, read
// back only by the stage): Arrow IPC only, no metadata.
func WriteEmbeddingsPart(mem memory.Allocator, path string, rows []Embedding, dim int) error {
	return writeEmbeddings(mem, path, rows, dim, arrow.Metadata{}, arrowfile.WriteWorkFile)
}

// fileWriter is arrowfile.WriteFile or arrowfile.WriteWorkFile.
type fileWriter func(path string, schema *arrow.Schema, batches ...arrow.RecordBatch) error

func writeEmbeddings(mem memory.Allocator, path string, rows []Embedding, dim int, md arrow.Metadata, write fileWriter) error {
	if dim <= 0 {
		return fmt.Errorf("write %s: embedding dimension %d", path, dim)
	}
	schema := EmbeddingsSchema(dim, md)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	ids := b.Field(0).(*array.StringBuilder)
	pids := b.Field(1).(*array.StringBuilder)
	names := b.Field(2).(*array.StringBuilder)
	vecs := b.Field(3).(*array.FixedSizeListBuilder)
	vals := vecs.ValueBuilder().(*array.Float32Builder)
	vals.Reserve(len(rows) * dim)
	for _, r := range rows {
		if len(r.Vector) != dim {
			return fmt.Errorf("write %s: lesion %s: embedding has %d values, want %d", path, r.LesionID, len(r.Vector), dim)
		}
		ids.Append(r.LesionID)
		pids.Append(r.PatientID)
		names.Append(r.Model)
		vecs.Append(true)
		vals.AppendValues(r.Vector, nil)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return write(path, schema, rec)
}

// ReadEmbeddings reads an embeddings table. Besides the schema written here it accepts what
// other tools write: embedding as list<float32|float64> or fixed_size_list, and only one of
// lesion_id and patient_id (the other is then copied from it).
func ReadEmbeddings(mem memory.Allocator, path string) ([]Embedding, arrow.Metadata, error) {
	t, err := ReadFile(path, mem)
	if err != nil {
		return nil, arrow.Metadata{}, err
	}
	defer t.Release()
	var rows []Embedding
	for _, b := range t.Batches {
		if rows, err = appendEmbeddings(rows, b); err != nil {
			return nil, arrow.Metadata{}, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return rows, t.Schema.Metadata(), nil
}

func appendEmbeddings(rows []Embedding, b arrow.RecordBatch) ([]Embedding, error) {
	ids, hasID, err := optionalColumn[*array.String](b, "lesion_id")
	if err != nil {
		return nil, err
	}
	pids, hasPID, err := optionalColumn[*array.String](b, "patient_id")
	if err != nil {
		return nil, err
	}
	if !hasID && !hasPID {
		return nil, errors.New("needs a lesion_id or patient_id column")
	}
	names, err := column[*array.String](b, "model")
	if err != nil {
		return nil, err
	}
	idx := b.Schema().FieldIndices("embedding")
	if len(idx) == 0 {
		return nil, errors.New(`missing column "embedding"`)
	}
	vec, err := vectorReader(b.Column(idx[0]))
	if err != nil {
		return nil, err
	}
	for i := 0; i < int(b.NumRows()); i++ {
		var r Embedding
		if hasID {
			r.LesionID = ids.Value(i)
		}
		if hasPID {
			r.PatientID = pids.Value(i)
		}
		if !hasID {
			r.LesionID = r.PatientID
		}
		if !hasPID {
			r.PatientID = r.LesionID
		}
		r.Model = names.Value(i)
		if r.Vector, err = vec(i); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// vectorReader returns a function copying row i of an embedding column.
func vectorReader(col arrow.Array) (func(i int) ([]float32, error), error) {
	var values arrow.Array
	var offsets func(i int) (int64, int64)
	switch c := col.(type) {
	case *array.FixedSizeList:
		values, offsets = c.ListValues(), c.ValueOffsets
	case *array.List:
		values, offsets = c.ListValues(), c.ValueOffsets
	case *array.LargeList:
		values, offsets = c.ListValues(), c.ValueOffsets
	default:
		return nil, fmt.Errorf("column \"embedding\" has type %s, want a list of float32", col.DataType())
	}
	get := func(int) float32 { return 0 }
	switch v := values.(type) {
	case *array.Float32:
		get = v.Value
	case *array.Float64:
		get = func(i int) float32 { return float32(v.Value(i)) }
	default:
		return nil, fmt.Errorf("column \"embedding\" holds %s, want float32", values.DataType())
	}
	return func(i int) ([]float32, error) {
		if col.IsNull(i) {
			return nil, errors.New("null embedding")
		}
		start, end := offsets(i)
		out := make([]float32, end-start)
		for k := range out {
			if values.IsNull(int(start) + k) {
				return nil, errors.New("null value in embedding")
			}
			out[k] = get(int(start) + k)
		}
		return out, nil
	}, nil
}
