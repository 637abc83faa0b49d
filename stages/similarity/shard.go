package similarity

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"connectome/internal/knn"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// Sharding implements pipeline.ShardAware: in a sharded run the stage runs once in the merge,
// over every shard's embeddings parts, or in each shard process over the shard's query rows
// (against all nodes), whose edge parts the merge then gathers.
func (st *Stage) Sharding() pipeline.Sharding { return layout.Sharding(layout.Similarity) }

// runSharded is Run for a sharded run.
func (st *Stage) runSharded(ctx context.Context, sc *pipeline.Context) error {
	n := sc.Shard.Count
	parts, err := embeddingParts(sc.RunDir, n)
	if err != nil {
		return err
	}
	if sc.Shard.IsPart() {
		return st.runRows(ctx, sc, parts)
	}
	if err := edgePartsReady(sc.RunDir, n, sc.ConfigHash); err == nil {
		return st.mergeEdges(sc, n)
	} else {
		sc.Log.Info("similarity: computing over every shard's embeddings", "reason", err)
	}
	all := slices.Concat(parts...)
	s := *st
	s.s.Embeddings = all
	return s.run(ctx, sc)
}

// embeddingParts lists, per shard, the embeddings parts of every model, and checks that the
// set is whole and of one config: every model has all N parts, each shard's embed marker
// exists, and every part carries its shard's marker's config hash, the same for all shards.
// The halt names what is missing or mismatched.
func embeddingParts(runDir string, n int) ([][]string, error) {
	all := layout.New(runDir, pipeline.AllShards(n))
	modelNames, err := all.EmbeddingModels()
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	if len(modelNames) == 0 {
		return nil, pipeline.Haltf("no embeddings parts: no shard of %s has an embeddings table; run the shards' embed stage first", all.StageDir(layout.Embed))
	}
	var problems []string
	hash := ""
	parts := make([][]string, n)
	for _, sh := range pipeline.AllShards(n).Each() {
		m, ok, err := pipeline.ReadMarker(runDir, layout.Embed, sh)
		if err != nil {
			return nil, pipeline.Halt(err)
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("shard %d has not completed embed (no %s)", sh.Index,
				filepath.Join(layout.New(runDir, sh).StageDir(layout.Embed), pipeline.MarkerFile)))
			continue
		}
		if hash == "" {
			hash = m.ConfigHash
		} else if m.ConfigHash != hash {
			problems = append(problems, fmt.Sprintf("shard %d's embed ran with config %.12s, shard 0's with %.12s", sh.Index, m.ConfigHash, hash))
			continue
		}
		for _, model := range modelNames {
			p := layout.New(runDir, sh).Embeddings(model)
			h, err := partConfigHash(p)
			switch {
			case os.IsNotExist(err):
				problems = append(problems, fmt.Sprintf("%s is missing", p))
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s: %v", p, err))
			case h != m.ConfigHash:
				problems = append(problems, fmt.Sprintf("%s has config %.12s, its shard's embed marker %.12s", p, h, m.ConfigHash))
			default:
				parts[sh.Index] = append(parts[sh.Index], p)
			}
		}
	}
	if len(problems) > 0 {
		const show = 10
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("; and %d more", len(problems)-show)
			problems = problems[:show]
		}
		return nil, pipeline.Haltf("embeddings parts of %d shards are not complete and of one config: %s%s", n, strings.Join(problems, "; "), more)
	}
	return parts, nil
}

// partConfigHash reads the config hash in an Arrow IPC file's schema metadata (the footer
// only, not the data).
func partConfigHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		return "", fmt.Errorf("read schema: %w", err)
	}
	defer r.Close()
	md := r.Schema().Metadata()
	if i := md.FindKey(tables.MetaConfigHash); i >= 0 {
		return md.Values()[i], nil
	}
	return "", fmt.Errorf("no %s in the schema metadata", tables.MetaConfigHash)
}

// runRows computes the shard's rows: the top-k lists of its own nodes (those of its
// embeddings parts) against the nodes of every part, into the shard's edges table. Bad vectors of other
// shards' nodes are theirs to report.
func (st *Stage) runRows(ctx context.Context, sc *pipeline.Context, parts [][]string) error {
	sh := sc.Shard
	if err := st.s.Validate(); err != nil {
		return pipeline.Halt(err)
	}
	in := &embeddings{models: map[string]*modelSet{}}
	own := map[string]map[string]bool{} // model → ids of this shard's nodes
	for i, ps := range parts {
		in.fail = func(string, error) {}
		if i == sh.Index {
			in.fail = sc.Fail
		}
		for _, p := range ps {
			before := map[string]int{}
			for name, m := range in.models {
				before[name] = len(m.ids)
			}
			if err := in.readFile(ctx, p, sc.Mem); err != nil {
				return err
			}
			if i != sh.Index {
				continue
			}
			for name, m := range in.models {
				if own[name] == nil {
					own[name] = map[string]bool{}
				}
				for _, id := range m.ids[before[name]:] {
					own[name][id] = true
				}
			}
		}
	}
	names := slices.Sorted(maps.Keys(in.models))
	sc.Progress(0).SetTotal(int64(len(names)))
	md := st.metadata(sc, names, map[string]string{"connectome.shard": sh.String()})
	var nodes int
	var edges int64
	err := tables.WriteEdgeStream(sc.Mem, layout.New(sc.RunDir, sh).Edges(), md, func(emit func(tables.Edge) error) error {
		for _, name := range names {
			m := in.models[name]
			in.models[name] = nil
			start := time.Now()
			ids, patients, res, lo, err := searchRows(ctx, m, own[name], st.s)
			if err != nil {
				return err
			}
			releaseVectors()
			if err := emitLists(emit, name, ids, patients, res, lo); err != nil {
				return err
			}
			nodes += res.N
			edges += int64(2 * res.N * res.K)
			sc.Log.Info("similarity rows", "model", name, "nodes", len(ids), "rows", res.N, "k", res.K, "elapsed", time.Since(start).Round(time.Millisecond))
			sc.Progress(0).Add(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sc.Count("nodes", int64(nodes))
	sc.Count("models", int64(len(names)))
	sc.Count("edges", edges)
	return nil
}

// searchRows orders the model's nodes by id, as search does, and searches the rows of the
// shard's own nodes, which must be contiguous in that order (shards are contiguous ranges of
// the lesion_id order). lo is the first own row.
func searchRows(ctx context.Context, m *modelSet, own map[string]bool, s Settings) (ids, patients []string, res *knn.Result, lo int, err error) {
	ids, patients, vecs := sortByID(m)
	lo, hi := -1, -1
	for x, id := range ids {
		if own[id] {
			if lo < 0 {
				lo = x
			}
			hi = x + 1
		}
	}
	if lo < 0 {
		lo, hi = 0, 0
	}
	if hi-lo != len(own) {
		return nil, nil, nil, 0, pipeline.Haltf("similarity of model %s: this shard's %d nodes are not a contiguous range of the lesion_id order (rows %d..%d): the parts were not made by one sharding", m.name, len(own), lo, hi)
	}
	res, err = knn.SearchRows(ctx, vecs, lo, hi, knn.Options{K: s.K, BlockSize: s.BlockSize})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, 0, err
		}
		return nil, nil, nil, 0, fmt.Errorf("similarity of model %s: %w", m.name, err)
	}
	return ids, patients, res, lo, nil
}

// edgePartsReady says why the shards' edge parts cannot be merged (nil when they can): every
// shard must have completed similarity with this config.
func edgePartsReady(runDir string, n int, hash string) error {
	for _, sh := range pipeline.AllShards(n).Each() {
		m, ok, err := pipeline.ReadMarker(runDir, layout.Similarity, sh)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("shard %d has no similarity part", sh.Index)
		case m.ConfigHash != hash:
			return fmt.Errorf("shard %d's similarity part has config %.12s, not %.12s", sh.Index, m.ConfigHash, hash)
		}
	}
	return nil
}

// mergeEdges gathers the shards' edge parts into edges.arrow, in the order of an unsharded
// run, and computes agreement.arrow from them: the same tables as an unsharded run.
func (st *Stage) mergeEdges(sc *pipeline.Context, n int) error {
	var edges []tables.Edge
	models := ""
	for i, p := range layout.New(sc.RunDir, pipeline.AllShards(n)).ShardEdges() {
		sh := pipeline.Shard{Index: i, Count: n}
		rows, md, err := tables.ReadEdges(p)
		if err != nil {
			return pipeline.Haltf("read edges part %s: %w", p, err)
		}
		if h := mdValue(md, tables.MetaConfigHash); h != sc.ConfigHash {
			return pipeline.Haltf("edges part %s has config %.12s, this run %.12s: re-run that shard's similarity", p, h, sc.ConfigHash)
		}
		ms := mdValue(md, "connectome.models")
		if sh.Index == 0 {
			models = ms
		} else if ms != models {
			return pipeline.Haltf("edges part %s has models %q, shard 0's %q", p, ms, models)
		}
		edges = append(edges, rows...)
	}
	kindOrder := func(k string) int {
		if k == tables.KindClosest {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(edges, func(a, b tables.Edge) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)),
			cmp.Compare(a.QueryLesionID, b.QueryLesionID), cmp.Compare(a.Rank, b.Rank))
	})
	var names []string
	if models != "" {
		names = strings.Split(models, ",")
	}
	lists, nodes, err := listsFromEdges(names, edges)
	if err != nil {
		return err
	}
	sc.Count("nodes", int64(nodes))
	sc.Count("models", int64(len(names)))
	sc.Count("edges", int64(len(edges)))
	sc.Count("merged_parts", int64(n))
	md := st.metadata(sc, names, nil)
	if err := tables.WriteEdges(layout.New(sc.RunDir, sc.Shard).Edges(), edges, md); err != nil {
		return fmt.Errorf("write edges: %w", err)
	}
	return st.writeAgreement(sc, md, agreement(names, lists, st.s.K))
}

// listsFromEdges gathers every model's closest lists from edges sorted as an unsharded run
// writes them (model, kind, query, rank), and counts the query nodes of every model.
func listsFromEdges(names []string, edges []tables.Edge) ([]closestLists, int, error) {
	lists := make([]closestLists, len(names))
	matches := make([][]string, len(names))
	counts := make([][]int, len(names)) // per model, closest matches of each of l.ids
	queries := make([]map[string]bool, len(names))
	for _, ed := range edges {
		mi := slices.Index(names, ed.Model)
		if mi < 0 {
			return nil, 0, pipeline.Haltf("edges parts: model %s is not in the parts' model list %q", ed.Model, strings.Join(names, ","))
		}
		if queries[mi] == nil {
			queries[mi] = map[string]bool{}
		}
		queries[mi][ed.QueryLesionID] = true
		if ed.Kind != tables.KindClosest {
			continue
		}
		l := &lists[mi]
		if len(l.ids) == 0 || l.ids[len(l.ids)-1] != ed.QueryLesionID {
			l.ids = append(l.ids, ed.QueryLesionID)
			counts[mi] = append(counts[mi], 0)
		}
		matches[mi] = append(matches[mi], ed.MatchLesionID)
		counts[mi][len(counts[mi])-1]++
	}
	nodes := 0
	for mi, name := range names {
		nodes += len(queries[mi])
		if err := lists[mi].index(matches[mi], counts[mi]); err != nil {
			return nil, 0, pipeline.Haltf("edges parts: model %s: %w", name, err)
		}
	}
	return lists, nodes, nil
}

// index sets l's matches from their ids, in node order, counts[x] for node x: the same
// count for every node.
func (l *closestLists) index(matches []string, counts []int) error {
	if len(l.ids) == 0 {
		return nil
	}
	l.k = counts[0]
	for x, c := range counts {
		if c != l.k {
			return fmt.Errorf("node %s has %d closest matches, node %s %d: the lists are not of one length", l.ids[x], c, l.ids[0], l.k)
		}
	}
	row := make(map[string]int32, len(l.ids))
	for i, id := range l.ids {
		row[id] = int32(i)
	}
	l.idx = make([]int32, len(matches))
	for i, m := range matches {
		r, ok := row[m]
		if !ok {
			return fmt.Errorf("match %s is no part's node", m)
		}
		l.idx[i] = r
	}
	return nil
}

func mdValue(md arrow.Metadata, key string) string {
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
}
