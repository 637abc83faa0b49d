package similarity

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"connectome/arrowio"
	"connectome/knn"
	"connectome/pipeline"
	"connectome/tables"
)

// Sharding implements pipeline.ShardAware: in a sharded run the stage runs once in the merge,
// over every shard's embeddings parts, or in each shard process over the shard's query rows
// (against all nodes), whose edge parts the merge then gathers.
func (st *Stage) Sharding() pipeline.Sharding { return pipeline.ShardEither }

// EdgePartPath is a shard's part of the edges, similarity/shard-i-of-N/edges.arrow: the top-k
// lists of the shard's own nodes against every node.
func EdgePartPath(runDir string, sh pipeline.Shard) string {
	return filepath.Join(pipeline.ShardDir(runDir, pipeline.StageSimilarity, sh), "edges.arrow")
}

// embeddingPartPath mirrors embed.PartPath (embed imports the ONNX runtime; this stage must
// not need it).
func embeddingPartPath(runDir, model string, sh pipeline.Shard) string {
	return filepath.Join(runDir, "embeddings", model, sh.PartName())
}

// runSharded is Run for a sharded run.
func (st *Stage) runSharded(ctx context.Context, sc *pipeline.Context, e env) error {
	n := sc.Shard.Count
	parts, err := embeddingParts(sc.RunDir, n)
	if err != nil {
		return err
	}
	if sc.Shard.IsPart() {
		return st.runRows(ctx, e, sc.Shard, parts)
	}
	if err := edgePartsReady(sc.RunDir, n, e.configHash); err == nil {
		return st.mergeEdges(e, n)
	} else {
		e.log.Info("similarity: computing over every shard's embeddings", "reason", err)
	}
	all := slices.Concat(parts...)
	s := *st
	s.s.Embeddings = all
	return s.run(ctx, e)
}

// embeddingParts lists, per shard, the embeddings parts of every model, and checks that the
// set is whole and of one config: every model has all N parts, each shard's embed marker
// exists, and every part carries its shard's marker's config hash, the same for all shards.
// The halt names what is missing or mismatched.
func embeddingParts(runDir string, n int) ([][]string, error) {
	root := filepath.Join(runDir, "embeddings")
	ents, err := os.ReadDir(root)
	if err != nil && !os.IsNotExist(err) {
		return nil, pipeline.Haltf("list embeddings parts: %w", err)
	}
	var modelNames []string
	for _, ent := range ents {
		if ent.IsDir() {
			modelNames = append(modelNames, ent.Name())
		}
	}
	if len(modelNames) == 0 {
		return nil, pipeline.Haltf("no embeddings parts: %s has no <model>/part-i-of-%d.arrow; run the shards' embed stage first", root, n)
	}
	var problems []string
	hash := ""
	parts := make([][]string, n)
	for _, sh := range pipeline.AllShards(n).Each() {
		m, ok, err := pipeline.ReadShardMarker(runDir, pipeline.StageEmbed, sh)
		if err != nil {
			return nil, pipeline.Haltf("%w", err)
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("shard %d has not completed embed (no %s)", sh.Index,
				filepath.Join(pipeline.ShardDir(runDir, pipeline.StageEmbed, sh), pipeline.MarkerFile)))
			continue
		}
		if hash == "" {
			hash = m.ConfigHash
		} else if m.ConfigHash != hash {
			problems = append(problems, fmt.Sprintf("shard %d's embed ran with config %.12s, shard 0's with %.12s", sh.Index, m.ConfigHash, hash))
			continue
		}
		for _, model := range modelNames {
			p := embeddingPartPath(runDir, model, sh)
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
	if i := md.FindKey(arrowio.MetaConfigHash); i >= 0 {
		return md.Values()[i], nil
	}
	return "", fmt.Errorf("no %s in the schema metadata", arrowio.MetaConfigHash)
}

// runRows computes the shard's rows: the top-k lists of its own nodes (those of its
// embeddings parts) against the nodes of every part, into EdgePartPath. Bad vectors of other
// shards' nodes are theirs to report.
func (st *Stage) runRows(ctx context.Context, e env, sh pipeline.Shard, parts [][]string) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Haltf("%w", err)
	}
	in := &embeddings{models: map[string]*modelSet{}}
	own := map[string]map[string]bool{} // model → ids of this shard's nodes
	for i, ps := range parts {
		in.fail = func(string, error) {}
		if i == sh.Index {
			in.fail = e.fail
		}
		for _, p := range ps {
			before := map[string]int{}
			for name, m := range in.models {
				before[name] = len(m.ids)
			}
			if err := in.readFile(ctx, p, e.mem); err != nil {
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
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range in.models {
			if !yield(n) {
				return
			}
		}
	})
	e.progress.SetTotal(int64(len(names)))
	var edges []tables.Edge
	var nodes int
	for _, name := range names {
		m := in.models[name]
		in.models[name] = nil
		start := time.Now()
		ids, patients, res, lo, err := searchRows(ctx, m, own[name], st.s)
		if err != nil {
			return err
		}
		for _, kind := range []string{tables.KindClosest, tables.KindFarthest} {
			for q := 0; q < res.N; q++ {
				list := res.ClosestOf(q)
				if kind == tables.KindFarthest {
					list = res.FarthestOf(q)
				}
				for r, nb := range list {
					edges = append(edges, tables.Edge{
						Model: name, Kind: kind,
						QueryLesionID: ids[lo+q], MatchLesionID: ids[nb.Index],
						QueryPatientID: patients[lo+q], MatchPatientID: patients[nb.Index],
						Rank: int32(r + 1), CosineDistance: nb.Distance,
						SimilarityPct: max(0, 1-nb.Distance) * 100,
					})
				}
			}
		}
		nodes += res.N
		e.log.Info("similarity rows", "model", name, "nodes", len(ids), "rows", res.N, "k", res.K, "elapsed", time.Since(start).Round(time.Millisecond))
		e.progress.Add(1)
	}
	e.count("nodes", int64(nodes))
	e.count("models", int64(len(names)))
	e.count("edges", int64(len(edges)))
	md := arrowio.Metadata(st.s.PipelineVersion, st.s.IDCVersion, e.configHash, map[string]string{
		"connectome.k":      strconv.Itoa(st.s.K),
		"connectome.models": strings.Join(names, ","),
		"connectome.shard":  sh.String(),
	})
	if err := tables.WriteEdges(EdgePartPath(e.runDir, sh), edges, md); err != nil {
		return fmt.Errorf("write edges part: %w", err)
	}
	return nil
}

// searchRows orders the model's nodes by id, as search does, and searches the rows of the
// shard's own nodes, which must be contiguous in that order (shards are contiguous ranges of
// the lesion_id order). lo is the first own row.
func searchRows(ctx context.Context, m *modelSet, own map[string]bool, s Settings) (ids, patients []string, res *knn.Result, lo int, err error) {
	ids, patients, vecs := sortByID(m)
	n := len(ids)
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
	dim := max(m.dim, 1)
	res, err = knn.SearchRows(ctx, vecs, n, dim, lo, hi, knn.Options{K: s.K, BlockSize: s.BlockSize})
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
		m, ok, err := pipeline.ReadShardMarker(runDir, pipeline.StageSimilarity, sh)
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
func (st *Stage) mergeEdges(e env, n int) error {
	var edges []tables.Edge
	models := ""
	for _, sh := range pipeline.AllShards(n).Each() {
		p := EdgePartPath(e.runDir, sh)
		rows, md, err := tables.ReadEdges(p)
		if err != nil {
			return pipeline.Haltf("read edges part %s: %w", p, err)
		}
		if h := mdValue(md, arrowio.MetaConfigHash); h != e.configHash {
			return pipeline.Haltf("edges part %s has config %.12s, this run %.12s: re-run that shard's similarity", p, h, e.configHash)
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
	closest := make([]map[string][]string, len(names))
	for mi := range names {
		closest[mi] = map[string][]string{}
	}
	nodes := map[string]map[string]bool{}
	for _, ed := range edges {
		mi := slices.Index(names, ed.Model)
		if mi < 0 {
			return pipeline.Haltf("edges parts: model %s is not in the parts' model list %q", ed.Model, models)
		}
		if nodes[ed.Model] == nil {
			nodes[ed.Model] = map[string]bool{}
		}
		nodes[ed.Model][ed.QueryLesionID] = true
		if ed.Kind == tables.KindClosest {
			closest[mi][ed.QueryLesionID] = append(closest[mi][ed.QueryLesionID], ed.MatchLesionID)
		}
	}
	var nn int
	for _, m := range nodes {
		nn += len(m)
	}
	e.count("nodes", int64(nn))
	e.count("models", int64(len(names)))
	e.count("edges", int64(len(edges)))
	e.count("merged_parts", int64(n))
	return st.writeTables(e, models, edges, agreement(names, closest, st.s.K))
}

func mdValue(md arrow.Metadata, key string) string {
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
}
