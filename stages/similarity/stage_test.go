package similarity

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

func vec(x ...float32) []float32 { return x }

// square: in model X a,b and c,d are pairs; in Y the pairs are a,c and b,d; Z is X without d.
func agreementRows() []embRow {
	return []embRow{
		{lesion: "a", patient: "p1", model: "X", vec: vec(1, 0)},
		{lesion: "b", patient: "p1", model: "X", vec: vec(1, 0.1)},
		{lesion: "c", patient: "p2", model: "X", vec: vec(0, 1)},
		{lesion: "d", patient: "p3", model: "X", vec: vec(0.1, 1)},
		{lesion: "a", patient: "p1", model: "Y", vec: vec(1, 0)},
		{lesion: "b", patient: "p1", model: "Y", vec: vec(0, 1)},
		{lesion: "c", patient: "p2", model: "Y", vec: vec(1, 0.1)},
		{lesion: "d", patient: "p3", model: "Y", vec: vec(0.1, 1)},
		{lesion: "c", patient: "p2", model: "Z", vec: vec(0, 1)},
		{lesion: "a", patient: "p1", model: "Z", vec: vec(1, 0)},
		{lesion: "b", patient: "p1", model: "Z", vec: vec(1, 0.1)},
	}
}

func runStage(t *testing.T, s Settings, rec *recorder) error {
	t.Helper()
	return rec.run(context.Background(), New(s))
}

func TestRunDirEmbeddingsAndAgreement(t *testing.T) {
	runDir := t.TempDir()
	rows := agreementRows()
	// one file per model, as the embed stage writes them
	for _, m := range []string{"X", "Y", "Z"} {
		var mr []embRow
		for _, r := range rows {
			if r.model == m {
				mr = append(mr, r)
			}
		}
		writeArrow(t, layout.New(runDir, pipeline.Shard{}).Embeddings(m), mr, true, false)
	}
	rec := newRecorder(t, runDir)
	s := Settings{K: 1}
	if err := runStage(t, s, rec); err != nil {
		t.Fatal(err)
	}
	if rec.total != 3 || rec.done != 3 {
		t.Errorf("progress %d/%d, want 3/3", rec.done, rec.total)
	}
	if rec.counts["nodes"] != 11 || rec.counts["edges"] != 22 || rec.counts["models"] != 3 {
		t.Errorf("counts %v", rec.counts)
	}
	edges, md, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if i := md.FindKey(tables.MetaConfigHash); i < 0 || md.Values()[i] != "testhash" {
		t.Errorf("metadata %v lacks the config hash", md)
	}
	checkModelX(t, edges)
	checkEdgeOrder(t, edges)
	checkAgreement(t, filepath.Join(rec.dir, "agreement.arrow"))
}

// checkModelX checks model X's edges of agreementRows with k = 1: closest then farthest,
// queries in id order; 0.1 was stored as float32.
func checkModelX(t *testing.T, edges []tables.Edge) {
	t.Helper()
	x := float64(float32(0.1))
	want := []struct {
		kind, q, m, qp, mp string
		d                  float64
	}{
		{"closest", "a", "b", "p1", "p1", 1 - 1/math.Sqrt(1+x*x)},
		{"closest", "b", "a", "p1", "p1", 1 - 1/math.Sqrt(1+x*x)},
		{"closest", "c", "d", "p2", "p3", 1 - 1/math.Sqrt(1+x*x)},
		{"closest", "d", "c", "p3", "p2", 1 - 1/math.Sqrt(1+x*x)},
		{"farthest", "a", "c", "p1", "p2", 1},
		{"farthest", "b", "c", "p1", "p2", 1 - x/math.Sqrt(1+x*x)},
		{"farthest", "c", "a", "p2", "p1", 1},
		{"farthest", "d", "a", "p3", "p1", 1 - x/math.Sqrt(1+x*x)},
	}
	for i, w := range want {
		e := edges[i]
		if e.Model != "X" || e.Kind != w.kind || e.QueryLesionID != w.q || e.MatchLesionID != w.m ||
			e.QueryPatientID != w.qp || e.MatchPatientID != w.mp || e.Rank != 1 ||
			math.Abs(e.CosineDistance-w.d) > 1e-12 || math.Abs(e.SimilarityPct-(1-w.d)*100) > 1e-9 {
			t.Errorf("edge %d = %+v, want %+v", i, e, w)
		}
	}
}

// checkEdgeOrder checks that edges are sorted by model, kind (closest first), query.
func checkEdgeOrder(t *testing.T, edges []tables.Edge) {
	t.Helper()
	for i := 1; i < len(edges); i++ {
		a, b := edges[i-1], edges[i]
		if a.Model > b.Model || a.Model == b.Model && (a.Kind > b.Kind || a.Kind == b.Kind && a.QueryLesionID > b.QueryLesionID) {
			t.Fatalf("edges not sorted at %d: %+v before %+v", i, a, b)
		}
	}
}

// checkAgreement checks the agreement of agreementRows' models with k = 1.
func checkAgreement(t *testing.T, path string) {
	t.Helper()
	ag, _, err := tables.ReadAgreement(path)
	if err != nil {
		t.Fatal(err)
	}
	wantAg := []tables.Agreement{{ModelA: "X", ModelB: "Y", K: 1}, {ModelA: "X", ModelB: "Z", K: 1, MeanOverlap: 2.0 / 3}, {ModelA: "Y", ModelB: "Z", K: 1}}
	if len(ag) != len(wantAg) {
		t.Fatalf("agreement %v, want %v", ag, wantAg)
	}
	for i := range ag {
		if ag[i].ModelA != wantAg[i].ModelA || ag[i].ModelB != wantAg[i].ModelB || ag[i].K != 1 || math.Abs(ag[i].MeanOverlap-wantAg[i].MeanOverlap) > 1e-15 {
			t.Errorf("agreement[%d] = %+v, want %+v", i, ag[i], wantAg[i])
		}
	}
}

// TestInputFormats: Arrow IPC and Parquet, list and fixed-size list, float32 and float64 all
// give the same edges, with arrow memory released.
func TestInputFormats(t *testing.T) {
	rows := agreementRows()
	var base []tables.Edge
	for _, format := range []string{"arrow", "parquet"} {
		for _, fixed := range []bool{true, false} {
			for _, f64 := range []bool{false, true} {
				dir := t.TempDir()
				path := filepath.Join(dir, "in."+format)
				if format == "arrow" {
					writeArrow(t, path, rows, fixed, f64)
				} else {
					writeParquet(t, path, rows, fixed, f64)
				}
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				rec := newRecorder(t, dir)
				rec.mem = mem
				if err := runStage(t, Settings{K: 2, Embeddings: []string{path}}, rec); err != nil {
					t.Fatalf("%s fixed=%v f64=%v: %v", format, fixed, f64, err)
				}
				mem.AssertSize(t, 0)
				edges, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
				if err != nil {
					t.Fatal(err)
				}
				if len(edges) != 2*2*11 {
					t.Fatalf("%d edges", len(edges))
				}
				if base == nil {
					base = edges
					continue
				}
				for i := range edges {
					if edges[i] != base[i] {
						t.Fatalf("%s fixed=%v f64=%v: edge %d = %+v, want %+v", format, fixed, f64, i, edges[i], base[i])
					}
				}
			}
		}
	}
}

func TestPatientIDAsNodeID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.parquet")
	writeParquet(t, path, []embRow{
		{patient: "200", model: "M", vec: vec(1, 0, 0)},
		{patient: "100", model: "M", vec: vec(1, 1, 0)},
		{patient: "300", model: "M", vec: vec(0, 0, 1)},
	}, false, false)
	rec := newRecorder(t, dir)
	if err := runStage(t, Settings{K: 5, Embeddings: []string{path}}, rec); err != nil {
		t.Fatal(err)
	}
	edges, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	// k ≥ N−1: every other node, ranks 1..2
	if len(edges) != 3*2*2 {
		t.Fatalf("%d edges: %+v", len(edges), edges)
	}
	e := edges[0]
	if e.QueryLesionID != "100" || e.QueryPatientID != "100" || e.MatchLesionID != "200" || e.Rank != 1 || edges[1].MatchLesionID != "300" || edges[1].Rank != 2 {
		t.Errorf("edges %+v", edges[:2])
	}
}

// A float64 value beyond float32's range is finite: its failure says it is out of range, not
// that it is NaN or infinite (issue 20 item 13); float32's largest value itself is fine.
func TestBadValueFloat64Overflow(t *testing.T) {
	a, _, err := array.FromJSON(memory.DefaultAllocator, arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float64),
		strings.NewReader(`[[1, -1e39], [1, 3.4028234663852886e38], [null, 1]]`))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	v, err := vectorsOf(a)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"value 1 is -1e+39, beyond the float32 range (±3.4e38)", "", "value 0 is null"} {
		if got := v.badValue(i); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("row %d: %q, want %q", i, got, want)
		}
	}
}

func TestBadVectorsFailItems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.arrow")
	nan := float32(math.NaN())
	writeArrow(t, path, []embRow{
		{lesion: "ok1", patient: "p", model: "M", vec: vec(1, 0)},
		{lesion: "zero", patient: "p", model: "M", vec: vec(0, 0)},
		{lesion: "nan", patient: "p", model: "M", vec: vec(nan, 1)},
		{lesion: "inf", patient: "p", model: "M", vec: vec(float32(math.Inf(-1)), 1)},
		{lesion: "null", patient: "p", model: "M", vec: nil},
		{lesion: "ok2", patient: "p", model: "M", vec: vec(0, 1)},
		{lesion: "ok3", patient: "p", model: "M", vec: vec(1, 1)},
	}, false, false)
	rec := newRecorder(t, dir)
	if err := runStage(t, Settings{K: 1, Embeddings: []string{path}}, rec); err != nil {
		t.Fatal(err)
	}
	for id, why := range map[string]string{"zero": "has zero norm", "nan": "value 0 is NaN", "inf": "value 0 is -Inf", "null": "is null"} {
		f, ok := rec.failures[id]
		if !ok || f.ErrorClass != pipeline.ClassInput || !strings.Contains(f.Message, "model M: embedding "+why) {
			t.Errorf("failure of %s = %+v, want %q", id, f, why)
		}
	}
	if len(rec.failures) != 4 || rec.counts["nodes"] != 3 {
		t.Errorf("failures %v, counts %v", rec.failures, rec.counts)
	}
	edges, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 6 {
		t.Fatalf("%d edges", len(edges))
	}
	for _, e := range edges {
		for _, id := range []string{e.QueryLesionID, e.MatchLesionID} {
			if !strings.HasPrefix(id, "ok") {
				t.Errorf("failed node %s in %+v", id, e)
			}
		}
	}
}

func TestHalts(t *testing.T) {
	cases := []struct {
		name string
		rows []embRow
		want []string
	}{
		{"duplicate id", []embRow{
			{lesion: "a", patient: "p", model: "M", vec: vec(1, 0)},
			{lesion: "a", patient: "p", model: "N", vec: vec(1, 0)}, // another model: fine
			{lesion: "a", patient: "p", model: "M", vec: vec(0, 1)},
		}, []string{"model M", "id a", "twice"}},
		{"dimension", []embRow{
			{lesion: "a", patient: "p", model: "M", vec: vec(1, 0)},
			{lesion: "b", patient: "p", model: "M", vec: vec(1, 0, 1)},
		}, []string{"model M", "id b", "dimension 3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "in.arrow")
			writeArrow(t, path, c.rows, false, false)
			err := runStage(t, Settings{K: 1, Embeddings: []string{path}}, newRecorder(t, dir))
			if !pipeline.IsHalt(err) {
				t.Fatalf("err = %v, want a halt", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			if _, statErr := os.Stat(layout.New(dir, pipeline.Shard{}).Edges()); statErr == nil {
				t.Error("edges.arrow written despite the halt")
			}
		})
	}
	t.Run("no embeddings", func(t *testing.T) {
		dir := t.TempDir()
		if err := runStage(t, DefaultSettings(), newRecorder(t, dir)); !pipeline.IsHalt(err) {
			t.Fatalf("err = %v, want a halt", err)
		}
	})
	t.Run("not a table", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "x.csv")
		if err := os.WriteFile(path, []byte("lesion_id,model\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := runStage(t, Settings{K: 1, Embeddings: []string{path}}, newRecorder(t, dir))
		if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "x.csv") {
			t.Fatalf("err = %v, want a halt naming the file", err)
		}
	})
	t.Run("missing column", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "in.arrow")
		rows := []embRow{{model: "M", vec: vec(1, 0)}} // neither lesion_id nor patient_id
		writeArrow(t, path, rows, false, false)
		err := runStage(t, Settings{K: 1, Embeddings: []string{path}}, newRecorder(t, dir))
		if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "patient_id") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSettings(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil || DefaultSettings().K != 5 {
		t.Fatalf("defaults %+v: %v", DefaultSettings(), err)
	}
	for _, s := range []Settings{{K: 0}, {K: -1}, {K: 5, BlockSize: -1}, {K: 5, Embeddings: []string{""}}} {
		if s.Validate() == nil {
			t.Errorf("%+v validated", s)
		}
	}
	st := New(DefaultSettings())
	if st.Name() != layout.Similarity || st.Version() == "" {
		t.Errorf("name %q version %q", st.Name(), st.Version())
	}
}

// TestEmbedStageFormat reads what the embed stage writes (tables.WriteEmbeddings).
func TestEmbedStageFormat(t *testing.T) {
	runDir := t.TempDir()
	rows := []tables.Embedding{
		{LesionID: "l2", PatientID: "p2", Model: "CTFM", Vector: vec(1, 0, 0)},
		{LesionID: "l1", PatientID: "p1", Model: "CTFM", Vector: vec(0.9, 0.1, 0)},
		{LesionID: "l3", PatientID: "p1", Model: "CTFM", Vector: vec(0, 0, 1)},
	}
	md := tables.Metadata("v", "idc", "h", nil)
	if err := tables.WriteEmbeddings(memory.DefaultAllocator, layout.New(runDir, pipeline.Shard{}).Embeddings("CTFM"), rows, 3, md); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	rec := newRecorder(t, runDir)
	rec.mem = mem
	if err := runStage(t, Settings{K: 1}, rec); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	edges, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, e := range edges {
		got += e.Kind[:1] + ":" + e.QueryLesionID + ">" + e.MatchLesionID + "(" + e.MatchPatientID + ") "
	}
	// l3 is orthogonal to both l1 and l2: the farthest tie goes to the smaller id, l1
	if want := "c:l1>l2(p2) c:l2>l1(p1) c:l3>l1(p1) f:l1>l3(p1) f:l2>l3(p1) f:l3>l1(p1) "; got != want {
		t.Errorf("edges %q, want %q", got, want)
	}
}

// TestAgreementRecordsTheKUsed: a k above a model's node count gives shorter lists, and
// agreement.arrow records the k the lists have, not the configured one (issue 20 item 10).
func TestAgreementRecordsTheKUsed(t *testing.T) {
	runDir := t.TempDir()
	nodes := map[string]int{}
	for _, m := range []string{"X", "Y", "Z"} {
		var mr []embRow
		for _, r := range agreementRows() {
			if r.model == m {
				mr = append(mr, r)
			}
		}
		nodes[m] = len(mr)
		writeArrow(t, layout.New(runDir, pipeline.Shard{}).Embeddings(m), mr, true, false)
	}
	rec := newRecorder(t, runDir)
	if err := runStage(t, Settings{K: 100}, rec); err != nil {
		t.Fatal(err)
	}
	ag, _, err := tables.ReadAgreement(filepath.Join(rec.dir, "agreement.arrow"))
	if err != nil || len(ag) != 3 {
		t.Fatalf("%d rows, %v", len(ag), err)
	}
	for _, a := range ag {
		if want := int32(max(nodes[a.ModelA], nodes[a.ModelB]) - 1); a.K != want {
			t.Errorf("%s/%s: k %d, want %d (the longer list)", a.ModelA, a.ModelB, a.K, want)
		}
	}
}
