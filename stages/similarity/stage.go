// Package similarity is the pipeline's similarity stage: for every model, each node's k
// closest and k farthest other nodes by cosine distance (similarity/edges.arrow), and how much
// the models agree on the closest ones (similarity/agreement.arrow).
package similarity

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/arrowio"
	"connectome/knn"
	"connectome/pipeline"
	"connectome/tables"
)

// Stage is the similarity stage.
type Stage struct{ s Settings }

// New returns the stage with settings s (validate them first).
func New(s Settings) *Stage { return &Stage{s: s} }

func (st *Stage) Name() string    { return pipeline.StageSimilarity }
func (st *Stage) Version() string { return "1" }
func (st *Stage) Settings() any   { return st.s }

// env is what the stage needs from the engine, so that tests can run it without one.
type env struct {
	runDir, dir, configHash string
	log                     *slog.Logger
	fail                    func(item string, err error)
	count                   func(name string, n int64)
	progress                interface {
		SetTotal(int64)
		Add(int64)
	}
	mem memory.Allocator
}

// Run reads the embeddings, writes edges.arrow and agreement.arrow. Bad vectors are item
// failures; inconsistent inputs halt.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	e := env{
		runDir: sc.RunDir, dir: sc.Dir, configHash: sc.ConfigHash, log: sc.Log,
		fail: sc.Fail, count: sc.Count, progress: sc.Progress(0), mem: memory.DefaultAllocator,
	}
	if sc.Shard.Sharded() && len(st.s.Embeddings) == 0 {
		return st.runSharded(ctx, sc, e) // shard.go
	}
	return st.run(ctx, e)
}

func (st *Stage) run(ctx context.Context, e env) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Haltf("%w", err)
	}
	paths := st.s.Embeddings
	if len(paths) == 0 {
		var err error
		paths, err = filepath.Glob(filepath.Join(e.runDir, "embeddings", "*.arrow"))
		if err != nil {
			return pipeline.Haltf("list embeddings: %w", err)
		}
		if len(paths) == 0 {
			return pipeline.Haltf("no embeddings: %s has no *.arrow file and no --embeddings were given", filepath.Join(e.runDir, "embeddings"))
		}
	}
	in := &embeddings{models: map[string]*modelSet{}, fail: e.fail}
	for _, p := range paths {
		if err := in.readFile(ctx, p, e.mem); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(in.models))
	for n := range in.models {
		names = append(names, n)
	}
	sort.Strings(names)
	e.progress.SetTotal(int64(len(names)))

	var edges []tables.Edge
	closest := make([]map[string][]string, len(names)) // per model: node → closest match ids
	for mi, name := range names {
		m := in.models[name]
		in.models[name] = nil // let the unsorted copy go once sorted
		start := time.Now()
		ids, patients, res, err := search(ctx, m, st.s)
		if err != nil {
			return err
		}
		closest[mi] = make(map[string][]string, len(ids))
		for _, kind := range []string{tables.KindClosest, tables.KindFarthest} {
			for q := range ids {
				list := res.ClosestOf(q)
				if kind == tables.KindFarthest {
					list = res.FarthestOf(q)
				} else {
					matches := make([]string, len(list))
					for r, nb := range list {
						matches[r] = ids[nb.Index]
					}
					closest[mi][ids[q]] = matches
				}
				for r, nb := range list {
					edges = append(edges, tables.Edge{
						Model: name, Kind: kind,
						QueryLesionID: ids[q], MatchLesionID: ids[nb.Index],
						QueryPatientID: patients[q], MatchPatientID: patients[nb.Index],
						Rank: int32(r + 1), CosineDistance: nb.Distance,
						SimilarityPct: max(0, 1-nb.Distance) * 100,
					})
				}
			}
		}
		e.count("nodes", int64(len(ids)))
		e.log.Info("similarity", "model", name, "nodes", len(ids), "dim", m.dim, "k", res.K, "elapsed", time.Since(start).Round(time.Millisecond))
		e.progress.Add(1)
	}
	e.count("models", int64(len(names)))
	e.count("edges", int64(len(edges)))

	return st.writeTables(e, strings.Join(names, ","), edges, agreement(names, closest, st.s.K))
}

// writeTables writes edges.arrow and agreement.arrow into the stage directory.
func (st *Stage) writeTables(e env, models string, edges []tables.Edge, agree []tables.Agreement) error {
	md := arrowio.Metadata(st.s.PipelineVersion, st.s.IDCVersion, e.configHash, map[string]string{
		"connectome.k":      strconv.Itoa(st.s.K),
		"connectome.models": models,
	})
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", e.dir, err)
	}
	if err := tables.WriteEdges(filepath.Join(e.dir, "edges.arrow"), edges, md); err != nil {
		return fmt.Errorf("write edges: %w", err)
	}
	if err := tables.WriteAgreement(filepath.Join(e.dir, "agreement.arrow"), agree, md); err != nil {
		return fmt.Errorf("write agreement: %w", err)
	}
	return nil
}

// search orders the model's nodes by id (so that knn's index tie-break is the id order) and
// runs the exact search.
func search(ctx context.Context, m *modelSet, s Settings) (ids, patients []string, res *knn.Result, err error) {
	ids, patients, vecs := sortByID(m)
	dim := max(m.dim, 1) // a model with no usable node has dim 0
	res, err = knn.Search(ctx, vecs, len(ids), dim, knn.Options{K: s.K, BlockSize: s.BlockSize})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("similarity of model %s: %w", m.name, err)
	}
	return ids, patients, res, nil
}

// sortByID returns the model's node ids, patients and vectors in id order, so that knn's
// index tie-break is the id order; it hands the vectors over (m.vecs is cleared).
func sortByID(m *modelSet) (ids, patients []string, vecs []float32) {
	n := len(m.ids)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return m.ids[order[a]] < m.ids[order[b]] })
	ids = make([]string, n)
	patients = make([]string, n)
	vecs = make([]float32, 0, len(m.vecs))
	for x, i := range order {
		ids[x], patients[x] = m.ids[i], m.patients[i]
		vecs = append(vecs, m.vecs[i*m.dim:(i+1)*m.dim]...)
	}
	m.vecs = nil
	return ids, patients, vecs
}

// agreement is, for every pair of models, the mean over the nodes both have of the share of
// closest matches they have in common. The share's denominator is the longer of the two
// lists (k, unless a model has k nodes or fewer), so identical lists give 1.
func agreement(names []string, closest []map[string][]string, k int) []tables.Agreement {
	var rows []tables.Agreement
	for a := range names {
		for b := a + 1; b < len(names); b++ {
			var sum float64
			var nodes int
			// sorted, so that the float sum is the same on every run
			for _, q := range slices.Sorted(maps.Keys(closest[a])) {
				la := closest[a][q]
				lb, ok := closest[b][q]
				if !ok {
					continue
				}
				den := max(len(la), len(lb))
				if den == 0 {
					continue
				}
				common := 0
				for _, x := range la {
					if slices.Contains(lb, x) {
						common++
					}
				}
				sum += float64(common) / float64(den)
				nodes++
			}
			mean := math.NaN()
			if nodes > 0 {
				mean = sum / float64(nodes)
			}
			rows = append(rows, tables.Agreement{ModelA: names[a], ModelB: names[b], K: int32(k), MeanOverlap: mean})
		}
	}
	return rows
}
