package fetch

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectome/internal/testenv"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/preprocess"
)

// BenchmarkFetchStage runs the whole stage (plan, cache check, downloads through the real
// client and fake-gcs-server, hand-off) on 4 synthetic 300-slice series at 2.5 mm, one lesion
// each, at the middle and near the ends. It reports the share of the series' bytes fetched per
// lesion for one 48 mm crop, one 64 mm crop, and what production fetches: the union of the 9
// registry models and preprocess's 64 mm QC patch, with the exact and the window planner.
func BenchmarkFetchStage(b *testing.B) {
	const size = 64 << 10 // bytes per slice; the share does not depend on it
	f := buildFixture([]seriesSpec{
		{n: 300, spacing: 2.5, z0: -400, objSize: size}, {n: 300, spacing: 2.5, z0: -400, objSize: size},
		{n: 300, spacing: 2.5, z0: -400, objSize: size}, {n: 300, spacing: 2.5, z0: -400, objSize: size},
	}, [][2]float64{{0, 0.5}, {1, 0.25}, {2, 0.8}, {3, 0.03}})
	env := newTestEnv(b, f, nil)
	crop := func(mm int) *models.Registry {
		y := strings.Replace(testModels, "roi: [48, 48, 48]", fmt.Sprintf("roi: [%d, %d, %d]", mm, mm, mm), 1)
		reg, err := models.Parse("m.yaml", []byte(y))
		if err != nil {
			b.Fatal(err)
		}
		return reg
	}
	full, err := models.Load(testenv.File(b, "configs/models.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name    string
		reg     *models.Registry
		models  []string
		planner SlicePlanner
		extra   []models.Preprocess
	}{
		{"crop=48mm", crop(48), []string{"cube48"}, PatchPlanner{}, nil},
		{"crop=64mm", crop(64), []string{"cube48"}, PatchPlanner{}, nil},
		{"registry-9-models+qc", full, nil, PatchPlanner{}, []models.Preprocess{preprocess.QCCrop()}},
		{"registry-9-models+qc-window-planner", full, nil, WindowPlanner{}, []models.Preprocess{preprocess.QCCrop()}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var got, series, objs int64
			for b.Loop() {
				runDir, cache := b.TempDir(), b.TempDir()
				f.write(b, runDir)
				s := testSettings(cache)
				s.Concurrency = 32
				s.Models = tc.models
				c, err := runFetch(context.Background(), b, runDir, newTestStage(s, tc.reg, env.store, tc.planner).WithExtraCrops(tc.extra...), false)
				if err != nil || len(c.emitted()) != len(f.lesions) {
					b.Fatalf("run: %v, %d lesions", err, len(c.emitted()))
				}
				m, _, _ := pipeline.ReadMarker(runDir, "fetch", pipeline.Shard{})
				got, series, objs = m.Counts["bytes_downloaded"], m.Counts["bytes_whole_series"], m.Counts["objects_downloaded"]
			}
			b.ReportMetric(100*float64(got)/float64(series), "%series_bytes")
			b.ReportMetric(float64(objs)/float64(len(f.lesions)), "objects/lesion")
		})
	}
}
