package report

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"connectome/internal/knn"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/pipeline"
)

// fixture is a run directory's inputs for the report stage.
type fixture struct {
	lesions   []tables.Lesion
	clinical  []tables.Clinical
	edges     []tables.Edge
	agreement []tables.Agreement
	// previews maps lesion id to a QC image written as qc/<id>.png.
	previews map[string]image.Image
	// noLesions/noClinical leave those tables out (a run from --embeddings).
	noLesions, noClinical bool
}

func (f *fixture) write(t testing.TB, runDir string) {
	t.Helper()
	md := tables.Metadata("test", "v0", "hash", nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tables.WriteEdges(layout.New(runDir, pipeline.Shard{}).Edges(), f.edges, md))
	if f.agreement != nil {
		must(tables.WriteAgreement(layout.New(runDir, pipeline.Shard{}).Agreement(), f.agreement, md))
	}
	if !f.noLesions {
		must(tables.WriteLesions(layout.New(runDir, pipeline.Shard{}).Lesions(), f.lesions, md))
	}
	if !f.noClinical {
		must(tables.WriteClinical(layout.New(runDir, pipeline.Shard{}).Clinical(), f.clinical, md))
	}
	if len(f.previews) > 0 {
		for id, img := range f.previews {
			p := layout.New(runDir, pipeline.Shard{}).QCPreview(id)
			must(os.MkdirAll(filepath.Dir(p), 0o755))
			fh, err := os.Create(p)
			must(err)
			must(png.Encode(fh, img))
			must(fh.Close())
		}
	}
}

// testLibrary returns the graph library path, fetched by scripts/fetch-web-deps.sh. Page
// tests need it: they fail under CI when it is missing and skip otherwise.
func testLibrary(t testing.TB) string {
	t.Helper()
	p := testenv.File(t, "stages", "report", GraphLibraryFile)
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "graph library missing (%v): run `make deps`", err)
	}
	return p
}

// runStage runs the report stage through the real engine and returns the page path.
func runStage(t testing.TB, runDir string, s Settings) string {
	t.Helper()
	r, err := pipeline.NewRunner([]pipeline.Stage{New(s)}, pipeline.Options{
		RunDir: runDir, Workers: 2, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatalf("report stage: %v", err)
	}
	return layout.New(runDir, pipeline.Shard{}).Page()
}

func testSettings(t testing.TB) Settings {
	s := DefaultSettings()
	s.GraphLibrary = testLibrary(t)
	s.Title = "Test connectome"
	s.PipelineVersion = "test"
	return s
}

// synthetic builds a fixture of n lesions (one per patient) in a few clusters, with real
// top-k edges from knn for each model. Models see the clusters with different noise, so
// their edges differ.
func synthetic(t testing.TB, n, models, k int, seed uint64) *fixture {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	f := &fixture{}
	sexes := []string{"Male", "Female"}
	races := []string{"White", "Black or African American", "Asian", "Unknown"}
	smoke := []string{"Current", "Former"}
	types := []string{"Adenocarcinoma, NOS", "Squamous cell carcinoma, NOS", "Small cell carcinoma, NOS", "Large cell carcinoma, NOS", "Carcinoma, NOS"}
	stages := []string{"IA", "IB", "IIA", "IIB", "IIIA", "IIIB", "IV"}
	for i := range n {
		id := fmt.Sprintf("L%05d", i)
		pid := fmt.Sprintf("P%05d", i)
		f.lesions = append(f.lesions, tables.Lesion{
			LesionID: id, PatientID: pid,
			StudyInstanceUID:    fmt.Sprintf("1.2.3.%d", i),
			SeriesInstanceUID:   fmt.Sprintf("1.2.3.%d.1", i),
			SRSeriesInstanceUID: fmt.Sprintf("1.2.3.%d.2", i),
			NBoxes:              1, StudyYear: 0,
		})
		st := rng.IntN(len(stages))
		f.clinical = append(f.clinical, tables.Clinical{
			PatientID: pid, Age: int32(55 + rng.IntN(20)), Sex: sexes[rng.IntN(2)],
			Race: races[rng.IntN(len(races))], Smoking: smoke[rng.IntN(2)],
			CancerTypeCode: "8140", CancerType: types[rng.IntN(len(types))],
			StageCode: fmt.Sprint(110 + st), Stage: stages[st],
		})
	}
	const dim, clusters = 32, 12
	centres := make([]float32, clusters*dim)
	for i := range centres {
		centres[i] = float32(rng.NormFloat64())
	}
	member := make([]int, n)
	for i := range member {
		member[i] = rng.IntN(clusters)
	}
	for m := range models {
		name := fmt.Sprintf("Model%c", 'A'+m)
		vec := make([]float32, n*dim)
		noise := 0.4 + 0.2*float64(m)
		for i := range n {
			for d := range dim {
				vec[i*dim+d] = centres[member[i]*dim+d] + float32(noise*rng.NormFloat64())
			}
		}
		f.edges = append(f.edges, knnEdges(t, name, vec, dim, k, f.lesions)...)
	}
	return f
}

// knnEdges computes the closest and farthest edges of one model with package knn.
func knnEdges(t testing.TB, model string, vec []float32, dim, k int, lesions []tables.Lesion) []tables.Edge {
	t.Helper()
	n := len(lesions)
	m := knn.NewMatrix(dim)
	for q := range n {
		copy(m.Grow(), vec[q*dim:(q+1)*dim])
	}
	res, err := knn.Search(context.Background(), m, knn.Options{K: k, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var out []tables.Edge
	for q := range n {
		for kind, list := range map[string][]knn.Neighbor{tables.KindClosest: res.ClosestOf(q), tables.KindFarthest: res.FarthestOf(q)} {
			for r, nb := range list {
				out = append(out, tables.Edge{
					Model: model, Kind: kind,
					QueryLesionID: lesions[q].LesionID, MatchLesionID: lesions[nb.Index].LesionID,
					QueryPatientID: lesions[q].PatientID, MatchPatientID: lesions[nb.Index].PatientID,
					Rank: int32(r + 1), CosineDistance: nb.Distance, SimilarityPct: max(0, 1-nb.Distance) * 100,
				})
			}
		}
	}
	return out
}

// noiseImage is a worst case for PNG size: random grey pixels.
func noiseImage(w, h int, seed uint64) image.Image {
	rng := rand.New(rand.NewPCG(seed, 3))
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	return img
}

// ctLikeImage looks like a QC preview: a dark field with a bright blob, three panels wide.
func ctLikeImage(w, h int, seed uint64) image.Image {
	rng := rand.New(rand.NewPCG(seed, 5))
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			px := x % (w / 3)
			dx, dy := float64(px-w/6), float64(y-h/2)
			v := 40 + rng.IntN(30)
			if dx*dx+dy*dy < float64(h*h)/16 {
				v = 180 + rng.IntN(40)
			}
			img.SetGray(x, y, color.Gray{Y: uint8(v)})
		}
	}
	return img
}
