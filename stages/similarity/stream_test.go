package similarity

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"connectome/internal/arrowfile"
	"connectome/internal/knn"
	"connectome/internal/tables"
)

// TestLowMemoryPathEqualsInMemory: the stage reads its input in slices of rows (a mapped file,
// a dictionary-encoded one through the copying reader, several batches, Parquet), reorders the
// vectors in place and writes the edges batch by batch. Its edges must equal, bit for bit, the
// in-memory computation: the vectors in one slice, in id order, searched at once. The input
// has more rows than a slice (4 096) and makes more edges than an edges batch (65 536), in
// shuffled id order; no Arrow buffer may leak.
func TestLowMemoryPathEqualsInMemory(t *testing.T) {
	const n, dim, k = sliceRows + 7, 9, 5
	rng := rand.New(rand.NewPCG(11, 12))
	var rows []embRow
	want := map[string][]tables.Edge{}
	for _, model := range []string{"A", "B"} {
		var mr []embRow
		for _, i := range rng.Perm(n) {
			v := make([]float32, dim)
			for j := range v {
				v[j] = float32(rng.IntN(15) - 7) // few values: exact ties
			}
			v[0] = 4 // no zero vector
			mr = append(mr, embRow{lesion: fmt.Sprintf("L%05d", i), patient: fmt.Sprintf("P%05d", i/3), model: model, vec: v})
		}
		want[model] = inMemoryEdges(t, model, mr, k)
		rows = append(rows, mr...)
	}
	dir := t.TempDir()
	inputs := map[string]func(path string){
		"arrow one batch":  func(p string) { writeArrow(t, p, rows, true, false) },
		"arrow batches":    func(p string) { writeArrowBatches(t, p, rows, 3) },
		"arrow dictionary": func(p string) { writeDictionaryModel(t, p, rows) },
		"parquet":          func(p string) { writeParquet(t, p, rows, false, false) },
	}
	for name, write := range inputs {
		path := filepath.Join(dir, name)
		write(path)
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		rec := newRecorder(t, filepath.Join(dir, name+"-run"))
		rec.mem = mem
		if err := runStage(t, Settings{K: k, Embeddings: []string{path}}, rec); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mem.AssertSize(t, 0)
		got, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
		if err != nil {
			t.Fatal(err)
		}
		all := slices.Concat(want["A"], want["B"])
		if len(got) != len(all) {
			t.Fatalf("%s: %d edges, want %d", name, len(got), len(all))
		}
		for i := range all {
			if got[i] != all[i] {
				t.Fatalf("%s: edge %d = %+v, in memory %+v", name, i, got[i], all[i])
			}
		}
	}
}

// inMemoryEdges is the computation without the stage: the model's vectors sorted by id into
// one slice, one knn.Search, edges in the order of edges.arrow.
func inMemoryEdges(t *testing.T, model string, rows []embRow, k int) []tables.Edge {
	t.Helper()
	rows = slices.Clone(rows)
	sort.Slice(rows, func(a, b int) bool { return rows[a].lesion < rows[b].lesion })
	m := knn.NewMatrix(len(rows[0].vec))
	for _, r := range rows {
		copy(m.Grow(), r.vec)
	}
	res, err := knn.Search(context.Background(), m, knn.Options{K: k})
	if err != nil {
		t.Fatal(err)
	}
	var edges []tables.Edge
	for _, kind := range []string{tables.KindClosest, tables.KindFarthest} {
		for q := range rows {
			list := res.ClosestOf(q)
			if kind == tables.KindFarthest {
				list = res.FarthestOf(q)
			}
			for r, nb := range list {
				match := rows[nb.Index]
				edges = append(edges, tables.Edge{Model: model, Kind: kind,
					QueryLesionID: rows[q].lesion, MatchLesionID: match.lesion,
					QueryPatientID: rows[q].patient, MatchPatientID: match.patient,
					Rank: int32(r + 1), CosineDistance: nb.Distance, SimilarityPct: max(0, 1-nb.Distance) * 100})
			}
		}
	}
	return edges
}

// writeArrowBatches writes rows as an Arrow IPC file of parts batches.
func writeArrowBatches(t *testing.T, path string, rows []embRow, parts int) {
	t.Helper()
	var batches []arrow.RecordBatch
	for p := range parts {
		lo, hi := p*len(rows)/parts, (p+1)*len(rows)/parts
		b := embBatch(t, memory.DefaultAllocator, rows[lo:hi], true, false)
		defer b.Release()
		batches = append(batches, b)
	}
	if err := arrowfile.WriteFile(path, batches[0].Schema(), batches...); err != nil {
		t.Fatal(err)
	}
}

// writeDictionaryModel writes rows with the model column dictionary-encoded.
func writeDictionaryModel(t *testing.T, path string, rows []embRow) {
	t.Helper()
	plain := embBatch(t, memory.DefaultAllocator, rows, true, false)
	defer plain.Release()
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	db := array.NewDictionaryBuilder(memory.DefaultAllocator, dt).(*array.BinaryDictionaryBuilder)
	defer db.Release()
	for _, r := range rows {
		if err := db.AppendString(r.model); err != nil {
			t.Fatal(err)
		}
	}
	dict := db.NewArray()
	defer dict.Release()
	fields := slices.Clone(plain.Schema().Fields())
	cols := slices.Clone(plain.Columns())
	for i, f := range fields {
		if f.Name == "model" {
			fields[i].Type, cols[i] = dt, dict
		}
	}
	schema := arrow.NewSchema(fields, nil)
	rec := array.NewRecordBatch(schema, cols, plain.NumRows())
	defer rec.Release()
	if err := arrowfile.WriteFile(path, schema, rec); err != nil {
		t.Fatal(err)
	}
	if !hasDictionary(schema.Fields()) {
		t.Fatal("hasDictionary misses the model column")
	}
}

// TestMappedFileGone: node ids read from a mapped file stay valid after the file is unmapped
// and deleted (they are copies, not views of the mapping).
func TestMappedFileGone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.arrow")
	writeArrow(t, path, agreementRows(), true, false)
	in := &embeddings{models: map[string]*modelSet{}, fail: func(string, error) {}}
	if err := in.readFile(context.Background(), path, memory.DefaultAllocator); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range slices.Sorted(maps.Keys(in.models)) {
		ids = append(ids, name+":"+fmt.Sprint(in.models[name].ids, in.models[name].patients))
	}
	want := []string{"X:[a b c d] [p1 p1 p2 p3]", "Y:[a b c d] [p1 p1 p2 p3]", "Z:[c a b] [p2 p1 p1]"}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids %q, want %q", ids, want)
	}
}

// TestParquetBatchCap: a Parquet file whose rows decode to more than the cap per batch halts
// before any page is read (issue 20 item 10); the same file passes a larger cap.
func TestParquetBatchCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.parquet")
	var rows []embRow
	for i := range 4 {
		rows = append(rows, embRow{lesion: fmt.Sprint("L", i), patient: "P", model: "M", vec: make([]float32, 1<<18)})
	}
	writeParquet(t, path, rows, false, false)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	err = checkParquetBatches(pf.MetaData(), 2<<20)
	if err == nil || !strings.Contains(err.Error(), "more than the 2 MiB a batch may take") {
		t.Fatalf("4 rows of 1 MiB under a 2 MiB cap: %v", err)
	}
	if err := checkParquetBatches(pf.MetaData(), maxBatchBytes); err != nil {
		t.Fatal(err)
	}
}
