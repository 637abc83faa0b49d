package tables

import (
	"math"
	"path/filepath"
	"testing"

	"connectome/arrowio"
)

func TestEdgesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edges.arrow")
	rows := []Edge{
		{Model: "CTFM", Kind: KindClosest, QueryLesionID: "l1", MatchLesionID: "l2", QueryPatientID: "p1", MatchPatientID: "p2", Rank: 1, CosineDistance: 0.25, SimilarityPct: 75},
		{Model: "CTFM", Kind: KindFarthest, QueryLesionID: "l1", MatchLesionID: "l3", QueryPatientID: "p1", MatchPatientID: "p3", Rank: 1, CosineDistance: 1.5, SimilarityPct: 0},
	}
	md := arrowio.Metadata("v1", "idc_v22", "abc", map[string]string{"connectome.k": "5"})
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
	if i := gotMD.FindKey(arrowio.MetaConfigHash); i < 0 || gotMD.Values()[i] != "abc" {
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
	if err := WriteEdges(path, nil, arrowio.Metadata("", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadEdges(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
	// an agreement file is not an edges file
	ag := filepath.Join(dir, "agreement.arrow")
	if err := WriteAgreement(ag, []Agreement{{ModelA: "a", ModelB: "b", K: 5, MeanOverlap: 0.5}}, arrowio.Metadata("", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadEdges(ag); err == nil {
		t.Fatal("read agreement.arrow as edges")
	}
}

func TestAgreementRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agreement.arrow")
	rows := []Agreement{{ModelA: "A", ModelB: "B", K: 5, MeanOverlap: 0.4}, {ModelA: "A", ModelB: "C", K: 5, MeanOverlap: math.NaN()}}
	if err := WriteAgreement(path, rows, arrowio.Metadata("v", "i", "h", nil)); err != nil {
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
