package tables

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"connectome/internal/arrowfile"
)

func TestEdgesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edges.arrow")
	rows := []Edge{
		{Model: "CTFM", Kind: KindClosest, QueryLesionID: "l1", MatchLesionID: "l2", QueryPatientID: "p1", MatchPatientID: "p2", Rank: 1, CosineDistance: 0.25, SimilarityPct: 75},
		{Model: "CTFM", Kind: KindFarthest, QueryLesionID: "l1", MatchLesionID: "l3", QueryPatientID: "p1", MatchPatientID: "p3", Rank: 1, CosineDistance: 1.5, SimilarityPct: 0},
	}
	md := Metadata("v1", "idc_v22", "abc", map[string]string{"connectome.k": "5"})
	if err := WriteEdges(path, rows, md); err != nil {
		t.Fatal(err)
	}
	got, gotMD, err := ReadEdges(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("%d rows", len(got))
	}
	for i := range rows {
		if got[i] != rows[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], rows[i])
		}
	}
	if i := gotMD.FindKey(MetaConfigHash); i < 0 || gotMD.Values()[i] != "abc" {
		t.Errorf("metadata %v", gotMD)
	}
	names := []string{"model", "kind", "query_lesion_id", "match_lesion_id", "query_patient_id", "match_patient_id", "rank", "cosine_distance", "similarity_pct"}
	s := EdgeSchema(md)
	for i, n := range names {
		if s.Field(i).Name != n {
			t.Errorf("column %d = %s, want %s (design §4)", i, s.Field(i).Name, n)
		}
	}
}

func TestEdgesEmptyAndMissingColumn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edges.arrow")
	if err := WriteEdges(path, nil, Metadata("", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadEdges(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
	// an agreement file is not an edges file
	ag := filepath.Join(dir, "agreement.arrow")
	if err := WriteAgreement(ag, []Agreement{{ModelA: "a", ModelB: "b", K: 5, MeanOverlap: 0.5}}, Metadata("", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadEdges(ag); err == nil {
		t.Fatal("read agreement.arrow as edges")
	}
}

func TestAgreementRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agreement.arrow")
	rows := []Agreement{{ModelA: "A", ModelB: "B", K: 5, MeanOverlap: 0.4}, {ModelA: "A", ModelB: "C", K: 5, MeanOverlap: math.NaN()}}
	if err := WriteAgreement(path, rows, Metadata("v", "i", "h", nil)); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadAgreement(path)
	if err != nil || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	if got[0] != rows[0] || got[1].ModelB != "C" || !math.IsNaN(got[1].MeanOverlap) {
		t.Errorf("got %+v", got)
	}
}

// TestWriteEdgeStream: rows emitted one by one come back in order across several record
// batches (and as many Parquet row groups), with no Arrow buffer left allocated; a generator's
// error comes back as it is and leaves the old files (and no temp file).
func TestWriteEdgeStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edges.arrow")
	n := 2*edgeBatchRows + 3
	row := func(i int) Edge {
		return Edge{Model: "M", Kind: KindClosest, QueryLesionID: strconv.Itoa(i / 5), MatchLesionID: strconv.Itoa(i),
			QueryPatientID: "p", MatchPatientID: "q", Rank: int32(i%5 + 1), CosineDistance: float64(i) / 7, SimilarityPct: float64(i)}
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	err := WriteEdgeStream(mem, path, Metadata("v", "", "h", nil), func(emit func(Edge) error) error {
		for i := range n {
			if err := emit(row(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	got, _, err := ReadEdges(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d rows, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != row(i) {
			t.Fatalf("row %d = %+v, want %+v", i, got[i], row(i))
		}
	}
	tab, err := ReadFile(path, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Batches) != 3 {
		t.Errorf("%d batches, want 3", len(tab.Batches))
	}
	tab.Release()
	if rows, groups := parquetShape(t, arrowfile.ParquetPath(path)); rows != int64(n) || groups != 3 {
		t.Errorf("Parquet copy: %d rows in %d row groups, want %d in 3", rows, groups, n)
	}

	halt := errors.New("halt: bad input")
	err = WriteEdgeStream(mem, path, Metadata("", "", "", nil), func(emit func(Edge) error) error {
		for i := range edgeBatchRows + 1 {
			if err := emit(row(i)); err != nil {
				return err
			}
		}
		return halt
	})
	if err != halt {
		t.Fatalf("err = %v, want the generator's own", err)
	}
	mem.AssertSize(t, 0)
	if got, _, err := ReadEdges(path); err != nil || len(got) != n {
		t.Fatalf("old file: %d rows, %v", len(got), err)
	}
	if rows, _ := parquetShape(t, arrowfile.ParquetPath(path)); rows != int64(n) {
		t.Errorf("old Parquet copy: %d rows, want %d", rows, n)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files left: %v, want edges.arrow and edges.parquet", ents)
	}
}

// parquetShape is the number of rows and row groups of a Parquet file.
func parquetShape(t *testing.T, path string) (int64, int) {
	t.Helper()
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return r.NumRows(), r.NumRowGroups()
}
