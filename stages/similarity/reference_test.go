package similarity

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/internal/testenv"
)

// refModels are the models of shared/reference/nlst-sybil-embeddings.
var refModels = []string{"CTClipVit", "CTFM", "Merlin", "PASTA", "SUPREME", "VISTA3D"}

// loadReference returns the 289 single-row patients' ids and, per model, their vectors
// (row-major, in the order of ids).
func loadReference(t *testing.T) (ids []string, vecs map[string][]float32, dims map[string]int) {
	t.Helper()
	dir := testenv.Shared(t, "reference", "nlst-sybil-embeddings")
	f, err := os.Open(filepath.Join(dir, "lesions.csv"))
	if err != nil {
		testenv.Missing(t, "reference data missing: %v", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rowsOf := map[string][]int{}
	for i, r := range recs[1:] {
		if r[0] != strconv.Itoa(i) {
			t.Fatalf("lesions.csv row %d has row=%s", i, r[0])
		}
		rowsOf[r[1]] = append(rowsOf[r[1]], i)
	}
	var rows []int
	for pid, rs := range rowsOf {
		if len(rs) == 1 {
			ids = append(ids, pid)
		}
	}
	sort.Strings(ids)
	for _, pid := range ids {
		rows = append(rows, rowsOf[pid][0])
	}
	if len(ids) != 289 {
		t.Fatalf("%d single-row patients, want 289", len(ids))
	}
	vecs, dims = map[string][]float32{}, map[string]int{}
	for _, m := range refModels {
		nf, err := os.Open(filepath.Join(dir, m+".npy"))
		if err != nil {
			t.Fatalf("reference data incomplete: %v", err)
		}
		shape, data, err := patch.ReadNPY(nf)
		nf.Close()
		if err != nil || len(shape) != 2 || shape[0] != len(recs)-1 {
			t.Fatalf("%s.npy: shape %v, err %v", m, shape, err)
		}
		d := shape[1]
		for _, r := range rows {
			vecs[m] = append(vecs[m], data[r*d:(r+1)*d]...)
		}
		dims[m] = d
	}
	return ids, vecs, dims
}

type refEdge struct {
	id string
	d  float64
}

// bruteForce is the published computation, written independently of knn: plain float64
// loops over the original vectors, d = 1 − a·b / (‖a‖‖b‖), full sort.
func bruteForce(ids []string, vecs []float32, dim, k int) (closest, farthest map[string][]refEdge) {
	closest, farthest = map[string][]refEdge{}, map[string][]refEdge{}
	at := func(i, j int) float64 { return float64(vecs[i*dim+j]) }
	for q := range ids {
		var all []refEdge
		for m := range ids {
			if m == q {
				continue
			}
			var ab, aa, bb float64
			for j := range dim {
				ab += at(q, j) * at(m, j)
				aa += at(q, j) * at(q, j)
				bb += at(m, j) * at(m, j)
			}
			all = append(all, refEdge{ids[m], 1 - ab/(math.Sqrt(aa)*math.Sqrt(bb))})
		}
		sort.Slice(all, func(a, b int) bool {
			return all[a].d < all[b].d || all[a].d == all[b].d && all[a].id < all[b].id
		})
		closest[ids[q]] = append([]refEdge(nil), all[:k]...)
		sort.Slice(all, func(a, b int) bool {
			return all[a].d > all[b].d || all[a].d == all[b].d && all[a].id < all[b].id
		})
		farthest[ids[q]] = append([]refEdge(nil), all[:k]...)
	}
	return closest, farthest
}

// TestReferenceConnectome runs the stage on the published NLST-Sybil embeddings (as an
// external Parquet file holding all six models, node id = patient_id) and checks every list
// against the brute-force computation: same ids in the same order, distances within 1e-6 of
// the 6-decimal values the published page shows.
func TestReferenceConnectome(t *testing.T) {
	ids, vecs, dims := loadReference(t)
	var rows []embRow
	for _, m := range refModels {
		d := dims[m]
		for i, id := range ids {
			rows = append(rows, embRow{patient: id, model: m, vec: vecs[m][i*d : (i+1)*d]})
		}
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "reference.parquet")
	writeParquet(t, in, rows, false, false)
	s := DefaultSettings()
	s.Embeddings = []string{in}
	rec := newRecorder(t, dir)
	if err := rec.run(context.Background(), New(s)); err != nil {
		t.Fatal(err)
	}
	if len(rec.failures) != 0 {
		t.Fatalf("failures: %v", rec.failures)
	}
	edges, _, err := tables.ReadEdges(filepath.Join(rec.dir, "edges.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(refModels) * 289 * 2 * 5; len(edges) != want {
		t.Fatalf("%d edges, want %d", len(edges), want)
	}
	got := map[string]map[string]map[string][]tables.Edge{} // model → kind → query
	for _, e := range edges {
		if e.QueryPatientID != e.QueryLesionID || e.MatchPatientID != e.MatchLesionID {
			t.Fatalf("patient ids differ from node ids: %+v", e)
		}
		if got[e.Model] == nil {
			got[e.Model] = map[string]map[string][]tables.Edge{}
		}
		if got[e.Model][e.Kind] == nil {
			got[e.Model][e.Kind] = map[string][]tables.Edge{}
		}
		got[e.Model][e.Kind][e.QueryLesionID] = append(got[e.Model][e.Kind][e.QueryLesionID], e)
	}
	for _, m := range refModels {
		wantC, wantF := bruteForce(ids, vecs[m], dims[m], 5)
		for kind, want := range map[string]map[string][]refEdge{tables.KindClosest: wantC, tables.KindFarthest: wantF} {
			for _, q := range ids {
				g := got[m][kind][q]
				if len(g) != 5 {
					t.Fatalf("%s %s %s: %d edges", m, kind, q, len(g))
				}
				for r, w := range want[q] {
					published := math.Round(w.d*1e6) / 1e6
					if g[r].MatchLesionID != w.id || g[r].Rank != int32(r+1) || math.Abs(g[r].CosineDistance-published) > 1e-6 {
						t.Fatalf("%s %s %s rank %d: got %s %.9f, want %s %.6f", m, kind, q, r+1, g[r].MatchLesionID, g[r].CosineDistance, w.id, published)
					}
					if math.Abs(g[r].CosineDistance-w.d) > 1e-12 {
						t.Errorf("%s %s %s rank %d: distance %.15f, brute force %.15f", m, kind, q, r+1, g[r].CosineDistance, w.d)
					}
				}
			}
		}
	}
	checkPublished(t, got)
}

// checkPublished compares with the published page's lists when CONNECTOME_PUBLISHED_MATCHES
// names a JSON file of its MATCH_DATA constant ({model: {c|f: {patient: [[id, d], …]}}}).
// That data is not part of this repository; the check is for a person who fetched it.
func checkPublished(t *testing.T, got map[string]map[string]map[string][]tables.Edge) {
	path := os.Getenv("CONNECTOME_PUBLISHED_MATCHES")
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pub map[string]map[string]map[string][][2]any
	if err := json.Unmarshal(b, &pub); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, m := range refModels {
		for short, kind := range map[string]string{"c": tables.KindClosest, "f": tables.KindFarthest} {
			for q, list := range pub[m][short] {
				g := got[m][kind][q]
				if len(g) != len(list) {
					t.Fatalf("published %s %s %s: %d matches, we have %d", m, kind, q, len(list), len(g))
				}
				for r, e := range list {
					id, d := e[0].(string), e[1].(float64)
					if q == "100158" && r < 2 {
						t.Logf("%s %s %s rank %d: published %s %.6f, ours %s %.9f", m, kind, q, r+1, id, d, g[r].MatchLesionID, g[r].CosineDistance)
					}
					if g[r].MatchLesionID != id || math.Abs(g[r].CosineDistance-d) > 1e-6 {
						t.Errorf("published %s %s %s rank %d: %s %.6f, we have %s %.9f", m, kind, q, r+1, id, d, g[r].MatchLesionID, g[r].CosineDistance)
					}
					compared++
				}
			}
		}
	}
	t.Logf("compared %d published edges", compared)
}
