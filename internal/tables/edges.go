package tables

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Edge kinds of similarity/edges.arrow.
const (
	KindClosest  = "closest"
	KindFarthest = "farthest"
)

// Edge is one row of similarity/edges.arrow: match is the query's rank-th closest (or
// farthest) node under model, by cosine distance.
type Edge struct {
	Model          string
	Kind           string // KindClosest or KindFarthest
	QueryLesionID  string
	MatchLesionID  string
	QueryPatientID string
	MatchPatientID string
	Rank           int32 // 1..k
	CosineDistance float64
	SimilarityPct  float64 // max(0, 1 − CosineDistance) × 100
}

var edgeFields = []arrow.Field{
	{Name: "model", Type: arrow.BinaryTypes.String},
	{Name: "kind", Type: arrow.BinaryTypes.String},
	{Name: "query_lesion_id", Type: arrow.BinaryTypes.String},
	{Name: "match_lesion_id", Type: arrow.BinaryTypes.String},
	{Name: "query_patient_id", Type: arrow.BinaryTypes.String},
	{Name: "match_patient_id", Type: arrow.BinaryTypes.String},
	{Name: "rank", Type: arrow.PrimitiveTypes.Int32},
	{Name: "cosine_distance", Type: arrow.PrimitiveTypes.Float64},
	{Name: "similarity_pct", Type: arrow.PrimitiveTypes.Float64},
}

// EdgeSchema is the schema of similarity/edges.arrow with metadata md.
func EdgeSchema(md arrow.Metadata) *arrow.Schema { return arrow.NewSchema(edgeFields, &md) }

// edgeBatchRows is the number of rows per record batch of an edges file: a batch is what a
// writer holds in memory (about 6 MiB with the pipeline's ids).
const edgeBatchRows = 1 << 16

// WriteEdges writes rows to path (atomically) with the given schema metadata.
func WriteEdges(path string, rows []Edge, md arrow.Metadata) error {
	return WriteEdgeStream(memory.DefaultAllocator, path, md, func(emit func(Edge) error) error {
		for _, r := range rows {
			if err := emit(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteEdgeStream writes path (atomically, with its Parquet copy as WriteFile does) from the
// rows that gen emits, in order, one record batch at a time, so that the table is never whole
// in memory. When gen fails, its error is returned as it is and both files are left as they were.
func WriteEdgeStream(mem memory.Allocator, path string, md arrow.Metadata, gen func(emit func(Edge) error) error) error {
	schema := EdgeSchema(md)
	var genErr error
	err := arrowfile.WriteStream(mem, path, schema, true, func(write func(arrow.RecordBatch) error) error {
		b := array.NewRecordBuilder(mem, schema)
		defer b.Release()
		rows, batches := 0, 0
		var writeErr error
		flush := func() error {
			rec := b.NewRecordBatch()
			defer rec.Release()
			rows, batches = 0, batches+1
			return write(rec)
		}
		emit := func(r Edge) error {
			appendEdge(b, r)
			if rows++; rows == edgeBatchRows {
				writeErr = flush()
			}
			return writeErr
		}
		if err := gen(emit); err != nil {
			if writeErr == nil {
				genErr = err
			}
			return err
		}
		if rows > 0 || batches == 0 { // an empty table is one empty batch
			return flush()
		}
		return nil
	})
	if genErr != nil {
		return genErr
	}
	return err
}

func appendEdge(b *array.RecordBuilder, r Edge) {
	for i, v := range []string{r.Model, r.Kind, r.QueryLesionID, r.MatchLesionID, r.QueryPatientID, r.MatchPatientID} {
		b.Field(i).(*array.StringBuilder).Append(v)
	}
	b.Field(6).(*array.Int32Builder).Append(r.Rank)
	b.Field(7).(*array.Float64Builder).Append(r.CosineDistance)
	b.Field(8).(*array.Float64Builder).Append(r.SimilarityPct)
}

// ReadEdges reads similarity/edges.arrow.
func ReadEdges(path string) ([]Edge, arrow.Metadata, error) {
	var rows []Edge
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		s := make([]*array.String, 6)
		for i := range s {
			c, err := column[*array.String](b, edgeFields[i].Name)
			if err != nil {
				return err
			}
			s[i] = c
		}
		rank, err := column[*array.Int32](b, "rank")
		if err != nil {
			return err
		}
		dist, err := column[*array.Float64](b, "cosine_distance")
		if err != nil {
			return err
		}
		pct, err := column[*array.Float64](b, "similarity_pct")
		if err != nil {
			return err
		}
		for i := 0; i < int(b.NumRows()); i++ {
			rows = append(rows, Edge{
				Model: s[0].Value(i), Kind: s[1].Value(i), QueryLesionID: s[2].Value(i),
				MatchLesionID: s[3].Value(i), QueryPatientID: s[4].Value(i), MatchPatientID: s[5].Value(i),
				Rank: rank.Value(i), CosineDistance: dist.Value(i), SimilarityPct: pct.Value(i),
			})
		}
		return nil
	})
	if err != nil {
		return nil, arrow.Metadata{}, fmt.Errorf("read edges: %w", err)
	}
	return rows, md, nil
}
