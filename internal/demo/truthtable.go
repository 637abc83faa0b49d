package demo

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// TruthTableName is the demo's ground-truth table in a finished demo run directory: for each
// lesion of the run, the tumour it was generated as. The pipeline never reads it; it is there
// so that a notebook can join the generating kind like any clinical facet and check that the
// map recovers it (notebooks/: the enrichment of the kinds among the closest neighbours).
const TruthTableName = "demo-truth.arrow"

// Schema metadata keys of the truth table, beside the lesions table's own.
const (
	MetaDemoGenerator = "connectome.demo_generator"
	MetaDemoSeed      = "connectome.demo_seed"
)

var truthFields = []arrow.Field{
	{Name: "lesion_id", Type: arrow.BinaryTypes.String},
	{Name: "patient_id", Type: arrow.BinaryTypes.String},
	{Name: "kind", Type: arrow.BinaryTypes.String},
	{Name: "texture", Type: arrow.BinaryTypes.String},
	{Name: "diameter_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "lobe", Type: arrow.BinaryTypes.String},
}

// WriteTruthTable writes runDir/TruthTableName (Arrow, with its Parquet copy): one row per
// lesion of the run's lesions table, in its order, with the generated tumour it was matched to.
func (m *Manifest) WriteTruthTable(runDir string) error {
	lesions, match, md, err := m.lesionTruth(runDir)
	if err != nil {
		return err
	}
	keys := append([]string(nil), md.Keys()...)
	vals := append([]string(nil), md.Values()...)
	keys = append(keys, MetaDemoGenerator, MetaDemoSeed)
	vals = append(vals, m.Generator, strconv.FormatInt(m.Seed, 10))
	schema := arrow.NewSchema(truthFields, ptr(arrow.NewMetadata(keys, vals)))

	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, l := range lesions {
		t := match[l.LesionID]
		for i, v := range []string{l.LesionID, l.PatientID, t.Kind, t.Texture} {
			b.Field(i).(*array.StringBuilder).Append(v)
		}
		b.Field(4).(*array.Float64Builder).Append(t.DiameterMM)
		b.Field(5).(*array.StringBuilder).Append(t.Lobe)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	if err := arrowfile.WriteFile(filepath.Join(runDir, TruthTableName), schema, rec); err != nil {
		return fmt.Errorf("write the demo's ground truth: %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
