package report

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"sync"

	"connectome/internal/tables"
	"connectome/pipeline"
)

// pageData is the JSON embedded in the page. Per-node data is stored column-wise (one array
// per attribute, indexed by node) and edges as parallel arrays of node indices, which keeps
// 5 000 nodes × 9 models × 2 kinds compact.
type pageData struct {
	Title           string         `json:"title"`
	PipelineVersion string         `json:"pipelineVersion,omitempty"`
	IDCVersion      string         `json:"idcVersion,omitempty"`
	K               int            `json:"k"`
	HasLesions      bool           `json:"hasLesions"`
	HasClinical     bool           `json:"hasClinical"`
	Nodes           nodeColumns    `json:"nodes"`
	Fields          []field        `json:"fields"`
	Facets          []facet        `json:"facets"`
	Models          []modelView    `json:"models"`
	Agreement       *agreementView `json:"agreement,omitempty"`

	previewCount, previewsDropped, previewsBroken, clinicalMatched int
}

type nodeColumns struct {
	ID       []string `json:"id"`
	Patient  []string `json:"patient"`
	Study    []string `json:"study,omitempty"`
	Series   []string `json:"series,omitempty"`
	SRSeries []string `json:"srSeries,omitempty"`
	// Preview holds a data: URI per node ("" when none); omitted when no node has one.
	Preview []string `json:"preview,omitempty"`
}

// field is one clinical attribute shown in the detail panel.
type field struct {
	Key    string   `json:"key"`
	Label  string   `json:"label"`
	Values []string `json:"values"`
}

type modelView struct {
	ModelInfo
	Closest  *edgeSet `json:"closest,omitempty"`
	Farthest *edgeSet `json:"farthest,omitempty"`
}

// edgeSet is one view: every query's ranked matches, and the layout of the graph they make.
type edgeSet struct {
	Q []int32   `json:"q"` // query node
	M []int32   `json:"m"` // match node
	R []int32   `json:"r"` // rank 1..k
	S []float64 `json:"s"` // similarity %, 2 decimals
	D []float64 `json:"d"` // cosine distance, 6 decimals
	// Layout holds x, y per node, integers in [-1000, 1000].
	Layout []int32 `json:"layout"`
}

type agreementView struct {
	// Source says where the numbers come from: "agreement.arrow" or "edges" (computed here
	// from the closest lists when the similarity stage wrote no agreement table).
	Source string   `json:"source"`
	Models []string `json:"models"`
	K      []int32  `json:"k"`
	// Values[k][a][b] is the mean overlap of the k-closest lists of models a and b; null
	// when not known.
	Values [][][]*float64 `json:"values"`
}

// buildPage assembles the page data: nodes, clinical fields and facets, per-model edge
// sets with their layouts, agreement and previews.
func buildPage(ctx context.Context, s Settings, in *inputs, workers int) (*pageData, error) {
	d := &pageData{
		Title: s.Title, PipelineVersion: s.PipelineVersion, IDCVersion: s.IDCVersion,
		HasLesions: in.lesions != nil, HasClinical: in.clinical != nil,
	}
	index := buildNodes(d, in)
	n := len(d.Nodes.ID)

	clin := in.clinical.rowsFor(d.Nodes.ID, d.Nodes.Patient)
	if clin != nil {
		d.Fields = clinicalFields(clin)
		for _, c := range clin {
			if c != nil {
				d.clinicalMatched++
			}
		}
	}
	d.Facets = buildFacets(clin)

	// Group edges per model and kind, in the registry's model order, then by name.
	order := map[string]int{}
	for i, m := range s.Models {
		order[m.Name] = i
	}
	info := map[string]ModelInfo{}
	for _, m := range s.Models {
		info[m.Name] = m
	}
	views := map[string]*modelView{}
	for _, e := range in.edges {
		v := views[e.Model]
		if v == nil {
			mi, ok := info[e.Model]
			if !ok {
				mi = ModelInfo{Name: e.Model}
			}
			v = &modelView{ModelInfo: mi}
			views[e.Model] = v
		}
		var set **edgeSet
		switch e.Kind {
		case tables.KindClosest:
			set = &v.Closest
		case tables.KindFarthest:
			set = &v.Farthest
		default:
			return nil, pipeline.Haltf("edges.arrow: unknown kind %q (model %s)", e.Kind, e.Model)
		}
		if *set == nil {
			*set = &edgeSet{}
		}
		es := *set
		es.Q = append(es.Q, index[e.QueryLesionID])
		es.M = append(es.M, index[e.MatchLesionID])
		es.R = append(es.R, e.Rank)
		es.S = append(es.S, round(e.SimilarityPct, 2))
		es.D = append(es.D, round(e.CosineDistance, 6))
		d.K = max(d.K, int(e.Rank))
	}
	names := make([]string, 0, len(views))
	for name := range views {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		oa, okA := order[a]
		ob, okB := order[b]
		switch {
		case okA && okB:
			return cmp.Compare(oa, ob)
		case okA:
			return -1
		case okB:
			return 1
		}
		return cmp.Compare(a, b)
	})
	for _, name := range names {
		d.Models = append(d.Models, *views[name])
	}
	if err := layoutViews(ctx, d, n, workers); err != nil {
		return nil, err
	}
	d.Agreement = buildAgreement(in.agreement, d, names)
	if err := addPreviews(ctx, d, in.previews); err != nil {
		return nil, err
	}
	return d, nil
}

// buildNodes fills d.Nodes and returns the node index of every lesion id. Nodes are the
// lesion table's rows in order; without it, the lesions named by edges, sorted by id. Edge
// endpoints missing from the lesion table are added after its rows so no edge dangles.
func buildNodes(d *pageData, in *inputs) map[string]int32 {
	index := map[string]int32{}
	add := func(id, patient string) {
		if _, ok := index[id]; ok {
			return
		}
		index[id] = int32(len(d.Nodes.ID))
		d.Nodes.ID = append(d.Nodes.ID, id)
		d.Nodes.Patient = append(d.Nodes.Patient, patient)
		if in.lesions != nil {
			d.Nodes.Study = append(d.Nodes.Study, "")
			d.Nodes.Series = append(d.Nodes.Series, "")
			d.Nodes.SRSeries = append(d.Nodes.SRSeries, "")
		}
	}
	for _, l := range in.lesions {
		if _, dup := index[l.LesionID]; dup {
			continue
		}
		add(l.LesionID, l.PatientID)
		i := len(d.Nodes.ID) - 1
		d.Nodes.Study[i], d.Nodes.Series[i], d.Nodes.SRSeries[i] = l.StudyInstanceUID, l.SeriesInstanceUID, l.SRSeriesInstanceUID
	}
	type ref struct{ id, patient string }
	var extra []ref
	seen := map[string]bool{}
	for _, e := range in.edges {
		for _, r := range []ref{{e.QueryLesionID, e.QueryPatientID}, {e.MatchLesionID, e.MatchPatientID}} {
			if _, ok := index[r.id]; !ok && !seen[r.id] {
				seen[r.id] = true
				extra = append(extra, r)
			}
		}
	}
	slices.SortFunc(extra, func(a, b ref) int { return cmp.Compare(a.id, b.id) })
	for _, r := range extra {
		add(r.id, r.patient)
	}
	return index
}

// clinicalFields lists the clinical attributes of each node; clin holds each node's row (nil
// when it has none).
func clinicalFields(clin []*tables.Clinical) []field {
	defs := []struct {
		key, label string
		get        func(c *tables.Clinical) string
	}{
		{"age", "Age", func(c *tables.Clinical) string {
			if c.Age < 0 {
				return ""
			}
			return strconv.Itoa(int(c.Age))
		}},
		{"sex", "Sex", func(c *tables.Clinical) string { return sexLabel(c.Sex) }},
		{"race", "Race", func(c *tables.Clinical) string { return c.Race }},
		{"smoking", "Smoking", func(c *tables.Clinical) string { return c.Smoking }},
		{"cancer_type", "Cancer type", func(c *tables.Clinical) string { return withCode(c.CancerType, c.CancerTypeCode) }},
		{"stage", "Stage", func(c *tables.Clinical) string { return withCode(c.Stage, c.StageCode) }},
	}
	out := make([]field, len(defs))
	for k, def := range defs {
		out[k] = field{Key: def.key, Label: def.label, Values: make([]string, len(clin))}
		for i, c := range clin {
			if c != nil {
				out[k].Values[i] = def.get(c)
			}
		}
	}
	return out
}

func withCode(label, code string) string {
	switch {
	case label == "":
		return code
	case code == "" || code == label:
		return label
	}
	return label + " (" + code + ")"
}

// layoutViews lays out every (model, kind) view. All start from one base layout of the union
// of every model's closest edges, so that switching models moves nodes rather than
// scattering them. Layouts run in parallel; each is deterministic on its own.
func layoutViews(ctx context.Context, d *pageData, n, workers int) error {
	var union [][2]int32
	var sets []*edgeSet
	for i := range d.Models {
		if c := d.Models[i].Closest; c != nil {
			union = append(union, edgePairs(c)...)
			sets = append(sets, c)
		}
		if f := d.Models[i].Farthest; f != nil {
			sets = append(sets, f)
		}
	}
	if union == nil && len(sets) > 0 {
		union = edgePairs(sets[0])
	}
	base := forceLayout(n, union, nil, defaultLayoutOptions(n))
	if err := ctx.Err(); err != nil {
		return err
	}
	jobs := make(chan *edgeSet)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for es := range jobs {
				// Start near the base, cooler and shorter: the map keeps its orientation
				// and each view only settles its own clusters.
				opt := defaultLayoutOptions(n)
				opt.StartTemp = 0.05
				opt.Iterations /= 2
				es.Layout = quantize(forceLayout(n, edgePairs(es), base, opt))
			}
		}()
	}
	var err error
	for _, es := range sets {
		if err = ctx.Err(); err != nil {
			break
		}
		jobs <- es
	}
	close(jobs)
	wg.Wait()
	return err
}

func edgePairs(es *edgeSet) [][2]int32 {
	out := make([][2]int32, len(es.Q))
	for i := range es.Q {
		out[i] = [2]int32{es.Q[i], es.M[i]}
	}
	return out
}

// quantize centres the layout and scales it to integers in [-1000, 1000]: plenty for a
// screen, and short in JSON.
func quantize(pos []float64) []int32 {
	n := len(pos) / 2
	out := make([]int32, len(pos))
	if n == 0 {
		return out
	}
	var cx, cy float64
	for i := range n {
		cx += pos[2*i]
		cy += pos[2*i+1]
	}
	cx, cy = cx/float64(n), cy/float64(n)
	var r float64
	for i := range n {
		r = max(r, math.Abs(pos[2*i]-cx), math.Abs(pos[2*i+1]-cy))
	}
	if r == 0 {
		r = 1
	}
	for i := range n {
		out[2*i] = int32(math.Round((pos[2*i] - cx) / r * 1000))
		out[2*i+1] = int32(math.Round((pos[2*i+1] - cy) / r * 1000))
	}
	return out
}

// buildAgreement uses agreement.arrow when present, else the overlap of the closest lists
// at the largest k, which is what the similarity stage computes.
func buildAgreement(rows []tables.Agreement, d *pageData, models []string) *agreementView {
	if len(models) < 2 {
		return nil
	}
	if rows != nil {
		return agreementFromTable(rows, models)
	}
	return &agreementView{Source: "edges", Models: models, K: []int32{int32(d.K)}, Values: [][][]*float64{agreementFromEdges(d)}}
}

func newMatrix(n int) [][]*float64 {
	m := make([][]*float64, n)
	for i := range m {
		m[i] = make([]*float64, n)
	}
	return m
}

// agreementFromTable arranges agreement.arrow's rows as one symmetric matrix per k, in the
// page's model order; rows of models not in the page are left out.
func agreementFromTable(rows []tables.Agreement, models []string) *agreementView {
	pos := map[string]int{}
	for i, m := range models {
		pos[m] = i
	}
	av := &agreementView{Source: "agreement.arrow", Models: models}
	kIndex := map[int32]int{}
	for _, r := range rows {
		a, okA := pos[r.ModelA]
		b, okB := pos[r.ModelB]
		if !okA || !okB {
			continue
		}
		ki, ok := kIndex[r.K]
		if !ok {
			ki = len(av.K)
			kIndex[r.K] = ki
			av.K = append(av.K, r.K)
			av.Values = append(av.Values, newMatrix(len(models)))
		}
		v := round(r.MeanOverlap, 4)
		av.Values[ki][a][b] = &v
		if av.Values[ki][b][a] == nil {
			av.Values[ki][b][a] = &v
		}
	}
	// A model's lists overlap with themselves completely; the table may leave that out.
	for _, m := range av.Values {
		for i := range m {
			if m[i][i] == nil {
				one := 1.0
				m[i][i] = &one
			}
		}
	}
	return av
}

// agreementFromEdges is the mean overlap of every two models' closest lists, over the nodes
// that both models list matches for; nil where a model has no closest lists.
func agreementFromEdges(d *pageData) [][]*float64 {
	n := len(d.Nodes.ID)
	lists := make([][][]int32, len(d.Models)) // model → node → closest matches
	for mi, m := range d.Models {
		if m.Closest == nil {
			continue
		}
		lists[mi] = make([][]int32, n)
		for i, q := range m.Closest.Q {
			lists[mi][q] = append(lists[mi][q], m.Closest.M[i])
		}
	}
	mat := newMatrix(len(d.Models))
	for a := range d.Models {
		for b := range d.Models {
			if lists[a] != nil && lists[b] != nil {
				mat[a][b] = meanOverlap(lists[a], lists[b])
			}
		}
	}
	return mat
}

// meanOverlap is the mean share of common matches of two models' lists, nil when no node
// has lists in both.
func meanOverlap(la, lb [][]int32) *float64 {
	var sum float64
	var cnt int
	for q := range la {
		a, b := la[q], lb[q]
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		common := 0
		for _, x := range a {
			if slices.Contains(b, x) {
				common++
			}
		}
		sum += float64(common) / float64(max(len(a), len(b)))
		cnt++
	}
	if cnt == 0 {
		return nil
	}
	v := round(sum/float64(cnt), 4)
	return &v
}

// addPreviews embeds each node's QC preview, downscaled, until the byte budget is spent.
// previews gives the places a lesion's preview may be (nil: the run has none).
func addPreviews(ctx context.Context, d *pageData, previews func(lesionID string) []string) error {
	if previews == nil {
		return nil
	}
	n := len(d.Nodes.ID)
	side := previewSide(n)
	uris := make([]string, n)
	total := 0
	for i, id := range d.Nodes.ID {
		if err := ctx.Err(); err != nil {
			return err
		}
		uri, err := firstPreview(previews(id), side)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// A broken preview is cosmetic: leave it out and count it.
			d.previewsBroken++
			continue
		}
		if total+len(uri) > previewBudget {
			d.previewsDropped++
			continue
		}
		total += len(uri)
		uris[i] = uri
		d.previewCount++
	}
	if d.previewCount > 0 {
		d.Nodes.Preview = uris
	}
	return nil
}

// firstPreview reads the first of the paths that exists (fs.ErrNotExist when none does).
func firstPreview(paths []string, side int) (string, error) {
	for _, p := range paths {
		uri, err := previewDataURI(p, side)
		if !errors.Is(err, fs.ErrNotExist) {
			return uri, err
		}
	}
	return "", fs.ErrNotExist
}

func round(v float64, digits int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}
