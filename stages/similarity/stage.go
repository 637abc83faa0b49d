// Package similarity is the pipeline's similarity stage: for every model, each node's k
// closest and k farthest other nodes by cosine distance (similarity/edges.arrow), and how much
// the models agree on the closest ones (similarity/agreement.arrow).
package similarity

import (
	"context"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"connectome/internal/knn"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// Stage is the similarity stage.
type Stage struct{ s Settings }

// New returns the stage with settings s (validate them first).
func New(s Settings) *Stage { return &Stage{s: s} }

func (st *Stage) Name() string    { return layout.Similarity }
func (st *Stage) Version() string { return "1" }
func (st *Stage) Settings() any   { return st.s }

// Run reads the embeddings, writes edges.arrow and agreement.arrow. Bad vectors are item
// failures; inconsistent inputs halt.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	if sc.Shard.Sharded() && len(st.s.Embeddings) == 0 {
		return st.runSharded(ctx, sc) // shard.go
	}
	return st.run(ctx, sc)
}

func (st *Stage) run(ctx context.Context, sc *pipeline.Context) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Halt(err)
	}
	paths := st.s.Embeddings
	if len(paths) == 0 {
		lay := layout.New(sc.RunDir, pipeline.Shard{})
		models, err := lay.EmbeddingModels()
		if err != nil {
			return pipeline.Halt(err)
		}
		if len(models) == 0 {
			return pipeline.Haltf("no embeddings: %s has no table and no --embeddings were given", lay.StageDir(layout.Embed))
		}
		for _, m := range models {
			paths = append(paths, lay.Embeddings(m))
		}
	}
	in := &embeddings{models: map[string]*modelSet{}, fail: sc.Fail}
	for _, p := range paths {
		if err := in.readFile(ctx, p, sc.Mem); err != nil {
			return err
		}
	}
	names := slices.Sorted(maps.Keys(in.models))
	sc.Progress(0).SetTotal(int64(len(names)))

	// Each model's edges are written as soon as it is searched: only its lists, not the
	// table, are ever in memory.
	md := st.metadata(sc, names, nil)
	lists := make([]closestLists, len(names))
	var edges int64
	err := tables.WriteEdgeStream(sc.Mem, layout.New(sc.RunDir, sc.Shard).Edges(), md, func(emit func(tables.Edge) error) error {
		for mi, name := range names {
			m := in.models[name]
			in.models[name] = nil // let the model's vectors go once searched
			start := time.Now()
			ids, patients, res, err := search(ctx, m, st.s)
			if err != nil {
				return err
			}
			releaseVectors()
			if err := emitLists(emit, name, ids, patients, res, 0); err != nil {
				return err
			}
			lists[mi] = closestOf(ids, res)
			edges += int64(2 * res.N * res.K)
			sc.Count("nodes", int64(len(ids)))
			sc.Log.Info("similarity", "model", name, "nodes", len(ids), "dim", m.dim, "k", res.K, "elapsed", time.Since(start).Round(time.Millisecond))
			warnSmall(sc, name, len(ids), res.K, st.s.K)
			sc.Progress(0).Add(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(names) == 0 {
		sc.Log.Warn("no embeddings to link: the map will be empty", "files", len(paths))
	}
	sc.Count("models", int64(len(names)))
	sc.Count("edges", edges)
	return st.writeAgreement(sc, md, agreement(names, lists, st.s.K))
}

// warnSmall says when a model has too few nodes for the configured k: the lists are shorter
// (agreement.arrow records the k they have) or, under 2 nodes, there are no edges at all.
func warnSmall(sc *pipeline.Context, model string, nodes, k, want int) {
	switch {
	case nodes < 2:
		sc.Log.Warn("model has fewer than 2 nodes: no edges", "model", model, "nodes", nodes)
	case k < want:
		sc.Log.Warn("k is more than the other nodes of the model: lists are shorter", "model", model, "k", want, "nodes", nodes, "k_used", k)
	}
}

// metadata is the schema metadata of the stage's tables; extra adds keys.
func (st *Stage) metadata(sc *pipeline.Context, names []string, extra map[string]string) arrow.Metadata {
	kv := map[string]string{
		"connectome.k":      strconv.Itoa(st.s.K),
		"connectome.models": strings.Join(names, ","),
	}
	maps.Copy(kv, extra)
	return tables.Metadata(st.s.PipelineVersion, st.s.IDCVersion, sc.ConfigHash, kv)
}

// writeAgreement writes agreement.arrow into the stage directory.
func (st *Stage) writeAgreement(sc *pipeline.Context, md arrow.Metadata, agree []tables.Agreement) error {
	if err := tables.WriteAgreement(layout.New(sc.RunDir, sc.Shard).Agreement(), agree, md); err != nil {
		return fmt.Errorf("write agreement: %w", err)
	}
	return nil
}

// emitLists emits the edges of res's lists, every closest list and then every farthest list,
// in node order; list q is node lo+q of ids (and patients).
func emitLists(emit func(tables.Edge) error, model string, ids, patients []string, res *knn.Result, lo int) error {
	for _, kind := range []string{tables.KindClosest, tables.KindFarthest} {
		for q := range res.N {
			list := res.ClosestOf(q)
			if kind == tables.KindFarthest {
				list = res.FarthestOf(q)
			}
			for r, nb := range list {
				err := emit(tables.Edge{
					Model: model, Kind: kind,
					QueryLesionID: ids[lo+q], MatchLesionID: ids[nb.Index],
					QueryPatientID: patients[lo+q], MatchPatientID: patients[nb.Index],
					Rank: int32(r + 1), CosineDistance: nb.Distance,
					SimilarityPct: max(0, 1-nb.Distance) * 100,
				})
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// releaseVectors collects the searched model's vectors, now garbage, at once: the collector
// would otherwise wait for the heap to double the vectors' size (GOGC), and the edges' batches
// allocated meanwhile would raise the peak by up to that much.
func releaseVectors() { runtime.GC() }

// search orders the model's nodes by id (so that knn's index tie-break is the id order) and
// runs the exact search.
func search(ctx context.Context, m *modelSet, s Settings) (ids, patients []string, res *knn.Result, err error) {
	ids, patients, vecs := sortByID(m)
	res, err = knn.Search(ctx, vecs, knn.Options{K: s.K, BlockSize: s.BlockSize})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("similarity of model %s: %w", m.name, err)
	}
	return ids, patients, res, nil
}

// sortByID returns the model's node ids, patients and vectors in id order, so that knn's
// index tie-break is the id order. It hands the vectors over, reordered in place (m.vecs is
// cleared): no second copy of them is made.
func sortByID(m *modelSet) (ids, patients []string, vecs *knn.Matrix) {
	n := len(m.ids)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return m.ids[order[a]] < m.ids[order[b]] })
	ids = make([]string, n)
	patients = make([]string, n)
	for x, i := range order {
		ids[x], patients[x] = m.ids[i], m.patients[i]
	}
	vecs = m.vecs
	if vecs == nil { // no usable vector
		vecs = knn.NewMatrix(1)
	}
	vecs.Permute(order)
	m.vecs, m.seen = nil, nil
	return ids, patients, vecs
}

// closestLists is one model's closest lists, for agreement: node x of ids (in id order) has
// the matches ids[idx[x*k:(x+1)*k]].
type closestLists struct {
	ids []string
	k   int
	idx []int32
}

func closestOf(ids []string, res *knn.Result) closestLists {
	idx := make([]int32, len(res.Closest))
	for i, nb := range res.Closest {
		idx[i] = nb.Index
	}
	return closestLists{ids: ids, k: res.K, idx: idx}
}

func (l *closestLists) matches(x int) []int32 { return l.idx[x*l.k : (x+1)*l.k] }

// agreement is, for every pair of models, the mean over the nodes both have of the share of
// closest matches they have in common. The share's denominator is the longer of the two
// lists (k, unless a model has k nodes or fewer), so identical lists give 1.
func agreement(names []string, lists []closestLists, k int) []tables.Agreement {
	var rows []tables.Agreement
	for a := range names {
		for b := a + 1; b < len(names); b++ {
			sum, nodes := overlap(&lists[a], &lists[b])
			mean := math.NaN()
			if nodes > 0 {
				mean = sum / float64(nodes)
			}
			// the k the lists have: less than the config's when a model has k nodes or fewer
			kk := min(k, max(lists[a].k, lists[b].k))
			rows = append(rows, tables.Agreement{ModelA: names[a], ModelB: names[b], K: int32(kk), MeanOverlap: mean})
		}
	}
	return rows
}

// overlap sums the shares of common matches over the nodes that la and lb both have, in id
// order (both lists are in id order, so one walk finds them; and the float sum is the same on
// every run), and counts those nodes.
func overlap(la, lb *closestLists) (sum float64, nodes int) {
	for x, y := 0, 0; x < len(la.ids) && y < len(lb.ids); {
		switch c := strings.Compare(la.ids[x], lb.ids[y]); {
		case c < 0:
			x++
		case c > 0:
			y++
		default:
			if den := max(la.k, lb.k); den > 0 {
				common := 0
				for _, i := range la.matches(x) {
					for _, j := range lb.matches(y) {
						if la.ids[i] == lb.ids[j] {
							common++
							break
						}
					}
				}
				sum += float64(common) / float64(den)
				nodes++
			}
			x, y = x+1, y+1
		}
	}
	return sum, nodes
}
