package report

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"connectome/internal/layout"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/report/reporttest"
	"connectome/stages/similarity"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/chromedp/chromedp"
)

// referenceDir returns ../shared/reference/nlst-sybil-embeddings (beside the repository).
// The data is needed: a missing copy fails the test under CI and skips it otherwise.
func referenceDir(t testing.TB) string {
	t.Helper()
	dir := testenv.Shared(t, "reference", "nlst-sybil-embeddings")
	if _, err := os.Stat(filepath.Join(dir, "lesions.csv")); err != nil {
		testenv.Missing(t, "reference data missing: %v", err)
	}
	return dir
}

func readCSV(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var out []map[string]string
	for _, r := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// referenceModels are the six models whose published embeddings are in the reference data.
var referenceModels = []string{"CTClipVit", "CTFM", "Merlin", "PASTA", "SUPREME", "VISTA3D"}

// referenceFixture builds the published connectome's inputs: the 289 patients with exactly
// one lesion record (node id = patient id), their clinical rows, and top-5 closest and
// farthest edges per model computed with package knn.
func referenceFixture(t testing.TB) (*fixture, map[string][]tables.Embedding) {
	t.Helper()
	dir := referenceDir(t)
	lesionRows := readCSV(t, filepath.Join(dir, "lesions.csv"))
	perPatient := map[string]int{}
	for _, r := range lesionRows {
		perPatient[r["patient_id"]]++
	}
	var rows []int // rows of the .npy files, in lesions.csv order
	f := &fixture{}
	for i, r := range lesionRows {
		if perPatient[r["patient_id"]] != 1 {
			continue
		}
		rows = append(rows, i)
		f.lesions = append(f.lesions, tables.Lesion{
			LesionID: r["patient_id"], PatientID: r["patient_id"],
			SeriesInstanceUID: r["series_instance_uid"], KeySOPInstanceUID: r["sop_instance_uid"],
			NBoxes: 1, StudyYear: -1,
		})
	}
	stageNames := []string{"IA", "IB", "IIA", "IIB", "IIIA", "IIIB", "IV"}
	for _, r := range readCSV(t, filepath.Join(dir, "clinical.csv")) {
		age, err := strconv.Atoi(r["age"])
		if err != nil {
			age = -1
		}
		c := tables.Clinical{PatientID: r["patient_id"], Age: int32(age), Sex: r["sex"], Race: r["race"],
			Smoking: r["smoking"], CancerType: r["cancer_type"], StageCode: r["stage"]}
		if s, err := strconv.Atoi(r["stage"]); err == nil && s >= 0 && s < len(stageNames) {
			c.Stage = stageNames[s]
		}
		f.clinical = append(f.clinical, c)
	}
	emb := map[string][]tables.Embedding{}
	for _, m := range referenceModels {
		fh, err := os.Open(filepath.Join(dir, m+".npy"))
		if errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("reference model %s missing: %v", m, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := patch.ReadNPY(fh)
		fh.Close()
		if err != nil || len(shape) != 2 || shape[0] != len(lesionRows) {
			t.Fatalf("%s.npy: shape %v, err %v", m, shape, err)
		}
		dim := shape[1]
		vec := make([]float32, 0, len(rows)*dim)
		for _, r := range rows {
			vec = append(vec, data[r*dim:(r+1)*dim]...)
		}
		f.edges = append(f.edges, knnEdges(t, m, vec, dim, 5, f.lesions)...)
		for i, l := range f.lesions {
			emb[m] = append(emb[m], tables.Embedding{LesionID: l.LesionID, PatientID: l.PatientID, Model: m, Vector: vec[i*dim : (i+1)*dim]})
		}
	}
	return f, emb
}

// TestReferencePage runs the published 289-patient connectome's embeddings (6 of its 9
// models) through the similarity and report stages and checks the page in chromium: every
// patient is a node, every model's lists are the ones similarity wrote.
func TestReferencePage(t *testing.T) {
	f, emb := referenceFixture(t)
	if len(f.lesions) != 289 {
		t.Fatalf("%d single-lesion patients, want 289", len(f.lesions))
	}
	runDir := t.TempDir()
	md := tables.Metadata("test", "v0", "hash", nil)
	for m, rows := range emb {
		if err := tables.WriteEmbeddings(memory.DefaultAllocator, layout.New(runDir, pipeline.Shard{}).Embeddings(m), rows, len(rows[0].Vector), md); err != nil {
			t.Fatal(err)
		}
	}
	if err := tables.WriteLesions(layout.New(runDir, pipeline.Shard{}).Lesions(), f.lesions, md); err != nil {
		t.Fatal(err)
	}
	if err := tables.WriteClinical(layout.New(runDir, pipeline.Shard{}).Clinical(), f.clinical, md); err != nil {
		t.Fatal(err)
	}
	// Model information from the registry, as the CLI fills it.
	reg, err := models.Load(testenv.File(t, "configs", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs := testSettings(t)
	for _, sp := range reg.Models {
		rs.Models = append(rs.Models, ModelInfo{Name: sp.Name, Title: sp.Title, Description: sp.Description,
			Reference: sp.Reference, Citation: sp.Citation, License: sp.License})
	}
	r, err := pipeline.NewRunner([]pipeline.Stage{similarity.New(similarity.DefaultSettings()), New(rs)},
		pipeline.Options{RunDir: runDir, Workers: 2, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatalf("similarity + report: %v", err)
	}
	edges, _, err := tables.ReadEdges(layout.New(runDir, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	// The similarity stage and this test's own knn lists agree (same vectors, same k).
	if got, want := edgeKeys(edges, "PASTA", "closest"), edgeKeys(f.edges, "PASTA", "closest"); !slices.Equal(got, want) {
		t.Errorf("similarity's PASTA lists differ from knn's")
	}
	f.edges = edges
	htmlPath := layout.New(runDir, pipeline.Shard{}).Page()
	st, err := os.Stat(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page: %d bytes", st.Size())

	b := reporttest.New(t)
	b.Open(t, htmlPath, "model=PASTA&facet=cancer")
	if n := reporttest.Eval[int](t, b, `__connectome.nodeCount()`); n != 289 {
		t.Errorf("drawn nodes %d, want 289", n)
	}
	for _, m := range []string{"PASTA", "CTFM", "VISTA3D"} {
		idx := slices.Index(referenceModels, m)
		b.Choose(t, "#model", strconv.Itoa(idx))
		if got, want := drawnKeys(t, b), edgeKeys(f.edges, m, "closest"); !slices.Equal(got, want) {
			t.Errorf("%s: drawn edges differ from the computed lists (%d vs %d)", m, len(got), len(want))
		}
	}
	b.Choose(t, "#model", strconv.Itoa(slices.Index(referenceModels, "PASTA")))
	legend := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#legend .item span:nth-child(2)')].map(s => s.textContent)`)
	if !slices.Contains(legend, "Adenocarcinoma") || !slices.Contains(legend, "Squamous cell") {
		t.Errorf("cancer legend %v", legend)
	}
	node := reporttest.Eval[int](t, b, isolatedNodeJS)
	clickNode(t, b, node)
	if got := b.Text(t, "#panel-title"); got != f.lesions[node].LesionID {
		t.Errorf("clicked %s, panel shows %s", f.lesions[node].LesionID, got)
	}
	b.Click(t, "#model-info-btn")
	cites := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#model-table textarea.cite')].map(a => a.value)`)
	links := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#model-table a')].map(a => a.href)`)
	if len(cites) != 6 || !strings.Contains(cites[1], "Vision Foundation Models for Computed Tomography") || len(links) != 6 {
		t.Errorf("model dialog: citations %q, links %q", cites, links)
	}
	reporttest.Eval[chromedp.Void](t, b, `document.getElementById('model-dialog').close()`)
	b.Click(t, "#agreement-btn")
	cells := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#agreement-table td.cell')].map(c => c.textContent)`)
	src := b.Text(t, "#agreement-source")
	if len(cells) != 36 || cells[0] != "1.00" || !strings.Contains(src, "agreement.arrow") {
		t.Errorf("agreement heatmap: %d cells (first %v), source %q", len(cells), cells[:min(1, len(cells))], src)
	}
	shot := b.Screenshot(t, "report-reference-289.png")
	keepScreenshot(t, shot)
	b.CheckClean(t)
}

// referenceRerun is the published 289-patient map re-run from its embeddings alone, as
// `connectome run --from similarity --embeddings FILES --clinical clinical.csv` does: the six
// models' vectors as external Arrow files, no cohort, the published clinical.csv from
// ../shared. It returns the run directory and the fixture (its edges are the run's).
func referenceRerun(t testing.TB) (string, *fixture) {
	t.Helper()
	f, emb := referenceFixture(t)
	dir := t.TempDir()
	md := tables.Metadata("elsewhere", "", "", nil)
	ss := similarity.DefaultSettings()
	for _, m := range referenceModels {
		p := filepath.Join(dir, m+".arrow")
		if err := tables.WriteEmbeddings(memory.DefaultAllocator, p, emb[m], len(emb[m][0].Vector), md); err != nil {
			t.Fatal(err)
		}
		ss.Embeddings = append(ss.Embeddings, p)
	}
	rs := testSettings(t)
	rs.ClinicalFile = filepath.Join(referenceDir(t), "clinical.csv")
	runDir := filepath.Join(dir, "run")
	r, err := pipeline.NewRunner([]pipeline.Stage{similarity.New(ss), New(rs)},
		pipeline.Options{RunDir: runDir, Workers: 2, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatalf("similarity + report from external embeddings: %v", err)
	}
	edges, _, err := tables.ReadEdges(layout.New(runDir, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	f.edges = edges
	return runDir, f
}

// BenchmarkStageReference times the whole stage (read tables, six layouts, render) on the
// 289-patient reference map.
func BenchmarkStageReference(b *testing.B) {
	f, _ := referenceFixture(b)
	runDir := b.TempDir()
	f.write(b, runDir)
	s := testSettings(b)
	for b.Loop() {
		runStage(b, runDir, s)
	}
}

// publishedGroup is the category the published page (ImagingDataCommons/nlst-sybil-connectome,
// docs/index.html, COLOR_SCHEMES) gives a patient of clinical.csv under a facet: the oracle
// that the re-run's colours are compared with.
func publishedGroup(facet string, r map[string]string) string {
	switch facet {
	case "sex", "smoking", "race":
		v := r[facet]
		if facet == "race" && !slices.Contains([]string{"White", "Black", "Asian", "Unknown"}, v) {
			return "Other"
		}
		return v
	case "age":
		a, err := strconv.Atoi(r["age"])
		switch {
		case err != nil:
			return "Unknown"
		case a < 60:
			return "55-59"
		case a < 65:
			return "60-64"
		case a < 70:
			return "65-69"
		}
		return "70-74"
	case "stage":
		return "Stage " + r["stage"]
	case "cancer":
		t := strings.ToLower(r["cancer_type"])
		switch {
		case strings.Contains(t, "small cell") && !strings.Contains(t, "non-small"):
			return "Small Cell"
		case strings.Contains(t, "squamous") || strings.Contains(t, "sq. cell"):
			return "Squamous Cell"
		case strings.Contains(t, "large cell"):
			return "Large Cell"
		case strings.Contains(t, "adenocarcinoma") || strings.Contains(t, "mucinous") || strings.Contains(t, "lepidic") ||
			strings.Contains(t, "acinar") || strings.Contains(t, "bronchiolo"):
			return "Adenocarcinoma"
		case strings.Contains(t, "non-small cell") || strings.Contains(t, "neuroendocrine") || strings.Contains(t, "carcinoma"):
			return "Other"
		}
		return "Unknown"
	}
	return ""
}

// TestReferenceRerunClinical re-runs the published 289-patient map from its embeddings alone
// with the published clinical.csv as --clinical: every facet is available, the nodes are
// coloured in the published page's groups (the same groups for cancer type, stage, sex, age
// and smoking; race is finer: the published page merges the rarer races into Other), and
// the edge labels of the busiest nodes never overlap, under every model.
func TestReferenceRerunClinical(t *testing.T) {
	runDir, f := referenceRerun(t)
	m, ok, err := pipeline.ReadMarker(runDir, layout.Report, pipeline.Shard{})
	if err != nil || !ok || m.Counts["clinical_nodes"] != 289 || m.Counts["failed"] != 0 {
		t.Fatalf("report marker %+v (ok %v, err %v): want clinical data for all 289 nodes, no failure", m.Counts, ok, err)
	}
	clin := map[string]map[string]string{}
	for _, r := range readCSV(t, filepath.Join(referenceDir(t), "clinical.csv")) {
		clin[r["patient_id"]] = r
	}
	b := reporttest.New(t)
	b.Open(t, layout.New(runDir, pipeline.Shard{}).Page(), "model=PASTA&facet=cancer")
	disabled := reporttest.Eval[[]bool](t, b, `[...document.querySelectorAll('#facet option')].map((o) => o.disabled)`)
	if len(disabled) != 6 || slices.Contains(disabled, true) {
		t.Fatalf("facet options disabled %v: want all 6 available", disabled)
	}
	ids := reporttest.Eval[[]string](t, b, `__connectome.data.nodes.id`)
	for _, facet := range []string{"cancer", "stage", "sex", "age", "race", "smoking"} {
		b.Choose(t, "#facet", facet)
		colours := reporttest.Eval[[]string](t, b, `__connectome.chart.getOption().series.find((s) => s.id === 'g').data.map((d) => d.itemStyle.color)`)
		ours, theirs := map[string]string{}, map[string]string{} // colour → published group, group → colour
		finer := facet == "race"
		for i, id := range ids {
			r := clin[id]
			if r == nil {
				t.Fatalf("node %s has no row in clinical.csv", id)
			}
			g, c := publishedGroup(facet, r), colours[i]
			if prev, seen := ours[c]; seen && prev != g {
				t.Errorf("%s: colour %s holds published groups %q and %q", facet, c, prev, g)
			}
			ours[c] = g
			if prev, seen := theirs[g]; seen && prev != c && !finer {
				t.Errorf("%s: published group %q has colours %s and %s", facet, g, prev, c)
			}
			theirs[g] = c
		}
		legend := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#legend .item span:nth-child(2)')].map((s) => s.textContent)`)
		t.Logf("%s: %d colours, %d published groups; legend %q", facet, len(ours), len(theirs), legend)
	}

	// The two busiest nodes of every model, pinned with the search box (which also zooms in).
	b.Choose(t, "#facet", "cancer")
	for mi, model := range referenceModels {
		b.Choose(t, "#model", strconv.Itoa(mi))
		indeg := map[string]int{}
		for _, e := range f.edges {
			if e.Model == model && e.Kind == "closest" {
				indeg[e.MatchLesionID]++
			}
		}
		hubs := slices.SortedFunc(maps.Keys(indeg), func(a, b string) int { return cmp.Or(indeg[b]-indeg[a], strings.Compare(a, b)) })
		for _, hub := range hubs[:2] {
			reporttest.Eval[bool](t, b, fmt.Sprintf(`(document.getElementById('search').value = '', true)`))
			b.Do(t, chromedp.SendKeys(chromedp.CSS("#search"), hub+"\r"))
			node := reporttest.Eval[int](t, b, `__connectome.state.node`)
			if ids[node] != hub {
				t.Fatalf("%s: search %s selected %s", model, hub, ids[node])
			}
			labels := checkLabels(t, b, node)
			t.Logf("%s: hub %s (in %d lists): %d edge labels on screen of %d edges", model, hub, indeg[hub], len(labels), reporttest.Eval[int](t, b, `__connectome.labelEdges()`))
		}
	}
	b.Choose(t, "#model", strconv.Itoa(slices.Index(referenceModels, "PASTA")))
	keepScreenshot(t, b.Screenshot(t, "report-reference-289-clinical.png"))
	b.CheckClean(t)
}
