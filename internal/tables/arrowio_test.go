package tables

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/arrowfile"
)

func TestRoundTripWithMetadata(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	md := Metadata("0.1.0", "idc_v23", "abc123", map[string]string{"connectome.k": "5"})
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String}, {Name: "v", Type: arrow.PrimitiveTypes.Float64}}, &md)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"a", "b", "c"}, nil)
	b.Field(1).(*array.Float64Builder).AppendValues([]float64{1, 2, 3}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	path := filepath.Join(t.TempDir(), "t.arrow")
	if err := arrowfile.WriteFile(path, schema, rec, rec); err != nil {
		t.Fatal(err)
	}
	tab, err := ReadFile(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Release()
	if numRows(tab) != 6 || len(tab.Batches) != 2 {
		t.Fatalf("%d rows in %d batches", numRows(tab), len(tab.Batches))
	}
	for k, want := range map[string]string{MetaPipelineVersion: "0.1.0", MetaIDCVersion: "idc_v23", MetaConfigHash: "abc123", "connectome.k": "5"} {
		if got := meta(tab, k); got != want {
			t.Errorf("meta %s = %q, want %q", k, got, want)
		}
	}
	if got := tab.Batches[1].Column(0).(*array.String).Value(2); got != "c" {
		t.Errorf("value %q", got)
	}
}

func TestWriteRejectsOtherSchema(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	a := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, nil)
	other := arrow.NewSchema([]arrow.Field{{Name: "y", Type: arrow.PrimitiveTypes.Int32}}, nil)
	b := array.NewRecordBuilder(mem, other)
	defer b.Release()
	b.Field(0).(*array.Int32Builder).Append(1)
	rec := b.NewRecordBatch()
	defer rec.Release()
	path := filepath.Join(t.TempDir(), "t.arrow")
	if err := arrowfile.WriteFile(path, a, rec); err == nil {
		t.Fatal("a batch of another schema was written")
	}
	if _, err := ReadFile(path, mem); err == nil {
		t.Fatal("a failed write left a readable file")
	}
	if _, err := os.Stat(arrowfile.ParquetPath(path)); err == nil {
		t.Fatal("a failed write left a Parquet copy")
	}
}

func TestEmptyTable(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, nil)
	path := filepath.Join(t.TempDir(), "empty.arrow")
	if err := arrowfile.WriteFile(path, schema); err != nil {
		t.Fatal(err)
	}
	tab, err := ReadFile(path, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Release()
	if numRows(tab) != 0 || tab.Schema.NumFields() != 1 {
		t.Fatalf("empty table read back as %d rows, %d fields", numRows(tab), tab.Schema.NumFields())
	}
}

// numRows is the table's total row count.
func numRows(t *Table) int64 {
	var n int64
	for _, b := range t.Batches {
		n += b.NumRows()
	}
	return n
}

// meta returns the schema metadata value for key, or "".
func meta(t *Table, key string) string {
	md := t.Schema.Metadata()
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
}

// The Parquet copy holds the same rows, the same Arrow schema (fixed_size_list included) and
// the same schema metadata, both as the Arrow schema and as the file's key-value metadata.
func TestParquetCopy(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	md := Metadata("0.1.0", "idc_v23", "abc123", map[string]string{MetaModel: "CTFM"})
	rows := []Embedding{
		{LesionID: "L1", PatientID: "P1", Model: "CTFM", Vector: []float32{1, 0, -0.5}},
		{LesionID: "L2", PatientID: "P2", Model: "CTFM", Vector: []float32{0.25, 2, 3}},
	}
	path := filepath.Join(t.TempDir(), "embed", "CTFM.arrow")
	if err := WriteEmbeddings(mem, path, rows, 3, md); err != nil {
		t.Fatal(err)
	}
	want, err := ReadFile(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()

	pq := filepath.Join(filepath.Dir(path), "CTFM.parquet")
	if arrowfile.ParquetPath(path) != pq {
		t.Fatalf("arrowfile.ParquetPath(%s) = %s", path, arrowfile.ParquetPath(path))
	}
	f, err := os.Open(pq)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := file.NewParquetReader(f, file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	kv := pr.MetaData().KeyValueMetadata()
	for _, k := range md.Keys() {
		if v := kv.FindValue(k); v == nil || *v != meta(want, k) {
			t.Errorf("Parquet key-value %s = %v, want %q", k, v, meta(want, k))
		}
	}
	fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	// Parquet readers name a list's element "element" and add field ids: compare names, types
	// up to the element's name, and values.
	if got.NumCols() != int64(want.Schema.NumFields()) || got.NumRows() != numRows(want) {
		t.Fatalf("Parquet copy has %d columns, %d rows; want %d, %d", got.NumCols(), got.NumRows(), want.Schema.NumFields(), numRows(want))
	}
	for c, wf := range want.Schema.Fields() {
		gf := got.Schema().Field(c)
		if gf.Name != wf.Name || !sameType(gf.Type, wf.Type) {
			t.Errorf("Parquet column %d: %s %s, want %s %s", c, gf.Name, gf.Type, wf.Name, wf.Type)
			continue
		}
		gc := array.NewChunkedSlice(got.Column(c).Data(), 0, got.NumRows())
		wantCol, err := array.Concatenate(columnChunks(want, c), mem)
		if err != nil {
			t.Fatal(err)
		}
		gotCol, err := array.Concatenate(gc.Chunks(), mem)
		gc.Release()
		if err != nil {
			t.Fatal(err)
		}
		if !sameValues(gotCol, wantCol) {
			t.Errorf("Parquet column %s: %v, want %v", wf.Name, gotCol, wantCol)
		}
		gotCol.Release()
		wantCol.Release()
	}
}

func columnChunks(t *Table, c int) []arrow.Array {
	var out []arrow.Array
	for _, b := range t.Batches {
		out = append(out, b.Column(c))
	}
	return out
}

func sameType(a, b arrow.DataType) bool {
	fa, okA := a.(*arrow.FixedSizeListType)
	fb, okB := b.(*arrow.FixedSizeListType)
	if okA && okB {
		return fa.Len() == fb.Len() && arrow.TypeEqual(fa.Elem(), fb.Elem())
	}
	return arrow.TypeEqual(a, b)
}

func sameValues(a, b arrow.Array) bool {
	la, okA := a.(*array.FixedSizeList)
	lb, okB := b.(*array.FixedSizeList)
	if okA && okB {
		return la.Len() == lb.Len() && array.Equal(la.ListValues(), lb.ListValues())
	}
	return array.Equal(a, b)
}

// Work files (a stage's parts and records) get no Parquet copy.
func TestWorkFileHasNoParquetCopy(t *testing.T) {
	dir := t.TempDir()
	rows := []Embedding{{LesionID: "L1", PatientID: "P1", Model: "m", Vector: []float32{1, 2}}}
	if err := WriteEmbeddingsPart(memory.DefaultAllocator, filepath.Join(dir, "part-000000.arrow"), rows, 2); err != nil {
		t.Fatal(err)
	}
	if err := WritePatchRecord(filepath.Join(dir, "L1.arrow"), []Patch{{LesionID: "L1", Model: "m"}}, arrow.Metadata{}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("work files wrote %v, want the two .arrow files only", names)
	}
}
