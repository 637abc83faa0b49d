package arrowio

import (
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
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
	if err := WriteFile(path, schema, rec, rec); err != nil {
		t.Fatal(err)
	}
	tab, err := ReadFile(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Release()
	if tab.NumRows() != 6 || len(tab.Batches) != 2 {
		t.Fatalf("%d rows in %d batches", tab.NumRows(), len(tab.Batches))
	}
	for k, want := range map[string]string{MetaPipelineVersion: "0.1.0", MetaIDCVersion: "idc_v23", MetaConfigHash: "abc123", "connectome.k": "5"} {
		if got := tab.Meta(k); got != want {
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
	if err := WriteFile(path, a, rec); err == nil {
		t.Fatal("a batch of another schema was written")
	}
	if _, err := ReadFile(path, mem); err == nil {
		t.Fatal("a failed write left a readable file")
	}
}

func TestEmptyTable(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, nil)
	path := filepath.Join(t.TempDir(), "empty.arrow")
	if err := WriteFile(path, schema); err != nil {
		t.Fatal(err)
	}
	tab, err := ReadFile(path, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Release()
	if tab.NumRows() != 0 || tab.Schema.NumFields() != 1 {
		t.Fatalf("empty table read back as %d rows, %d fields", tab.NumRows(), tab.Schema.NumFields())
	}
}
