package demo

import (
	"fmt"
	"math"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// KindAgreement is, for one model of a finished run, how often a tumour's closest matches
// share its generating kind, against what chance would give.
type KindAgreement struct {
	Model   string
	Queries int
	Edges   int     // closest edges counted
	Same    float64 // fraction of closest edges whose match has the query's kind
	Chance  float64 // expected fraction for random matches (per query, averaged)
}

// lesionTruth reads a finished run's lesions (and their table's metadata) and matches each to
// the generated tumour it was drawn from.
func (m *Manifest) lesionTruth(runDir string) ([]tables.Lesion, map[string]*Tumour, arrow.Metadata, error) {
	truth, err := m.Truth()
	if err != nil {
		return nil, nil, arrow.Metadata{}, err
	}
	lesions, md, err := tables.ReadLesions(layout.New(runDir, pipeline.Shard{}).Lesions())
	if err != nil {
		return nil, nil, arrow.Metadata{}, err
	}
	// A lesion's centre is the centre of its boxes: within a few mm of the tumour's.
	match, err := MatchLesions(lesions, truth, 6)
	if err != nil {
		return nil, nil, arrow.Metadata{}, err
	}
	return lesions, match, md, nil
}

// MatchLesions maps each lesion of a run to the ground-truth tumour it was drawn from: the
// tumour of the same CT series whose centre is nearest to the lesion's centre, within
// maxMM. A lesion with no tumour within maxMM is an error (the pipeline placed it wrongly).
func MatchLesions(lesions []tables.Lesion, truth []Tumour, maxMM float64) (map[string]*Tumour, error) {
	bySeries := map[string][]*Tumour{}
	for i := range truth {
		bySeries[truth[i].SeriesInstanceUID] = append(bySeries[truth[i].SeriesInstanceUID], &truth[i])
	}
	out := map[string]*Tumour{}
	for _, l := range lesions {
		var best *Tumour
		bestD := math.Inf(1)
		for _, t := range bySeries[l.SeriesInstanceUID] {
			d := math.Sqrt(sq(l.CenterMM[0]-t.CentreLPS[0]) + sq(l.CenterMM[1]-t.CentreLPS[1]) + sq(l.CenterMM[2]-t.CentreLPS[2]))
			if d < bestD {
				best, bestD = t, d
			}
		}
		if best == nil || bestD > maxMM {
			return nil, fmt.Errorf("lesion %s (patient %s) is %.1f mm from the nearest generated tumour, want ≤ %.1f",
				l.LesionID, l.PatientID, bestD, maxMM)
		}
		out[l.LesionID] = best
	}
	return out, nil
}

// Agreement reads a finished run's lesions and closest edges and measures, per model, how often
// the closest matches share the query's generating kind (ground truth from the cohort).
func (m *Manifest) Agreement(runDir string) ([]KindAgreement, error) {
	lesions, match, _, err := m.lesionTruth(runDir)
	if err != nil {
		return nil, err
	}
	edges, _, err := tables.ReadEdges(layout.New(runDir, pipeline.Shard{}).Edges())
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	for _, l := range lesions {
		count[match[l.LesionID].Kind]++
	}
	type acc struct {
		same, edges int
		queries     map[string]bool
	}
	per := map[string]*acc{}
	for _, e := range edges {
		if e.Kind != tables.KindClosest {
			continue
		}
		q, mt := match[e.QueryLesionID], match[e.MatchLesionID]
		if q == nil || mt == nil {
			return nil, fmt.Errorf("edge %s → %s names a lesion not in lesions.arrow", e.QueryLesionID, e.MatchLesionID)
		}
		a := per[e.Model]
		if a == nil {
			a = &acc{queries: map[string]bool{}}
			per[e.Model] = a
		}
		a.edges++
		a.queries[e.QueryLesionID] = true
		if q.Kind == mt.Kind {
			a.same++
		}
	}
	var out []KindAgreement
	n := len(lesions)
	for model, a := range per {
		var chance float64
		for id := range a.queries {
			chance += float64(count[match[id].Kind]-1) / float64(max(n-1, 1))
		}
		out = append(out, KindAgreement{Model: model, Queries: len(a.queries), Edges: a.edges,
			Same: float64(a.same) / float64(a.edges), Chance: chance / float64(len(a.queries))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out, nil
}
