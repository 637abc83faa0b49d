package tables

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Agreement is one row of similarity/agreement.arrow: how much two models agree on each
// node's neighbours. MeanOverlap is the mean, over the nodes present under both models, of
// |closest_k(A) ∩ closest_k(B)| / K (the longer list's length when a model has ≤ K nodes);
// NaN when the two models share no node.
type Agreement struct {
	ModelA      string
	ModelB      string
	K           int32
	MeanOverlap float64
}

var agreementFields = []arrow.Field{
	{Name: "model_a", Type: arrow.BinaryTypes.String},
	{Name: "model_b", Type: arrow.BinaryTypes.String},
	{Name: "k", Type: arrow.PrimitiveTypes.Int32},
	{Name: "mean_overlap", Type: arrow.PrimitiveTypes.Float64},
}

// WriteAgreement writes rows to path (atomically) with the given schema metadata.
func WriteAgreement(path string, rows []Agreement, md arrow.Metadata) error {
	schema := arrow.NewSchema(agreementFields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.ModelA)
		b.Field(1).(*array.StringBuilder).Append(r.ModelB)
		b.Field(2).(*array.Int32Builder).Append(r.K)
		b.Field(3).(*array.Float64Builder).Append(r.MeanOverlap)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return arrowfile.WriteFile(path, schema, rec)
}

// ReadAgreement reads similarity/agreement.arrow.
func ReadAgreement(path string) ([]Agreement, arrow.Metadata, error) {
	var rows []Agreement
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		ma, err := column[*array.String](b, "model_a")
		if err != nil {
			return err
		}
		mb, err := column[*array.String](b, "model_b")
		if err != nil {
			return err
		}
		k, err := column[*array.Int32](b, "k")
		if err != nil {
			return err
		}
		mo, err := column[*array.Float64](b, "mean_overlap")
		if err != nil {
			return err
		}
		for i := 0; i < int(b.NumRows()); i++ {
			rows = append(rows, Agreement{ModelA: ma.Value(i), ModelB: mb.Value(i), K: k.Value(i), MeanOverlap: mo.Value(i)})
		}
		return nil
	})
	if err != nil {
		return nil, arrow.Metadata{}, fmt.Errorf("read agreement: %w", err)
	}
	return rows, md, nil
}
