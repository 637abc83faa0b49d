package tables

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

func TestEmbeddingsRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	path := filepath.Join(t.TempDir(), "embeddings", "demo.arrow")
	rows := []Embedding{
		{LesionID: "L1", PatientID: "P1", Model: "demo", Vector: []float32{1, 0, -0.5}},
		{LesionID: "L2", PatientID: "P1", Model: "demo", Vector: []float32{0.25, 2, 3}},
	}
	md := Metadata("0.1", "v22", "abc", map[string]string{MetaModelSHA256: "ff", MetaPreprocessing: `{"axcodes":"RAS"}`})
	if err := WriteEmbeddings(mem, path, rows, 3, md); err != nil {
		t.Fatal(err)
	}
	got, gotMD, err := ReadEmbeddings(mem, path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Errorf("got %+v, want %+v", got, rows)
	}
	for k, want := range map[string]string{MetaModelSHA256: "ff", MetaConfigHash: "abc", MetaPreprocessing: `{"axcodes":"RAS"}`} {
		if i := gotMD.FindKey(k); i < 0 || gotMD.Values()[i] != want {
			t.Errorf("metadata %s missing or wrong: %v", k, gotMD)
		}
	}
	tab, err := ReadFile(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Release()
	if ft := tab.Schema.Field(3).Type; !arrow.TypeEqual(ft, arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float32)) {
		t.Errorf("embedding type %s", ft)
	}
}

func TestWriteEmbeddingsRejectsWrongDim(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	err := WriteEmbeddings(mem, filepath.Join(t.TempDir(), "x.arrow"),
		[]Embedding{{LesionID: "L1", Vector: []float32{1, 2}}}, 3, arrow.Metadata{})
	if err == nil || !strings.Contains(err.Error(), "L1") {
		t.Errorf("err %v", err)
	}
}

// Embeddings made elsewhere: variable-size list<float64>, patient_id only.
func TestReadEmbeddingsForeignLayout(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "patient_id", Type: arrow.BinaryTypes.String},
		{Name: "model", Type: arrow.BinaryTypes.String},
		{Name: "embedding", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"P7", "P8"}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"m", "m"}, nil)
	lb := b.Field(2).(*array.ListBuilder)
	for _, v := range [][]float64{{1, 2}, {3, 4}} {
		lb.Append(true)
		lb.ValueBuilder().(*array.Float64Builder).AppendValues(v, nil)
	}
	rec := b.NewRecordBatch()
	path := filepath.Join(t.TempDir(), "foreign.arrow")
	if err := arrowfile.WriteFile(path, schema, rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()
	got, _, err := ReadEmbeddings(mem, path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Embedding{{"P7", "P7", "m", []float32{1, 2}}, {"P8", "P8", "m", []float32{3, 4}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}
