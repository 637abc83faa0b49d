package tables

import (
	"context"
	"fmt"

	"connectome/pipeline"
)

// LesionSeries is one lesion with the CT instances of its series: what streams from stage to
// stage through fetch, preprocess and embed (the payload of the engine's items), read once per
// process from the cohort tables.
type LesionSeries struct {
	Lesion    Lesion
	Instances []Instance
}

// LesionSeriesOf returns the lesion an item carries.
func LesionSeriesOf(payload any) (*LesionSeries, error) {
	ls, ok := payload.(*LesionSeries)
	if !ok || ls == nil {
		return nil, fmt.Errorf("the item carries %T, not a lesion with its series", payload)
	}
	return ls, nil
}

// LesionSeriesList pairs every lesion with the instances of its series.
func LesionSeriesList(lesions []Lesion, instances []Instance) []*LesionSeries {
	bySeries := map[string][]Instance{}
	for _, in := range instances {
		bySeries[in.SeriesInstanceUID] = append(bySeries[in.SeriesInstanceUID], in)
	}
	out := make([]*LesionSeries, len(lesions))
	for i, l := range lesions {
		out[i] = &LesionSeries{Lesion: l, Instances: bySeries[l.SeriesInstanceUID]}
	}
	return out
}

// LesionItems is the item source of the streaming stages: it reads the cohort's lesions and
// instances tables and gives one item per lesion, carrying its *LesionSeries.
func LesionItems(lesionsPath, instancesPath string) pipeline.ItemSource {
	return func(context.Context) ([]pipeline.Item, error) {
		lesions, _, err := ReadLesions(lesionsPath)
		if err != nil {
			return nil, fmt.Errorf("read lesions: %w", err)
		}
		instances, _, err := ReadInstances(instancesPath)
		if err != nil {
			return nil, fmt.Errorf("read instances: %w", err)
		}
		items := make([]pipeline.Item, len(lesions))
		for i, ls := range LesionSeriesList(lesions, instances) {
			items[i] = pipeline.Item{ID: ls.Lesion.LesionID, Payload: ls}
		}
		return items, nil
	}
}
