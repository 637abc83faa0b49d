package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models/onnxrt/onnxrttest"
	"connectome/pipeline"
	"connectome/stages"
	"connectome/stages/report"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestMain(m *testing.M) {
	onnxrttest.UseRepoLibrary()
	os.Exit(m.Run())
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run", "--no-such-flag"}, {"run", "stray"},
		{"run", "--config", "", "--run-dir", "x", "--from", "nope"}, {"run", "--log-format", "xml"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestRunHelpDocumentsEveryFlag(t *testing.T) {
	code, _, help := runCmd("run", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	// Every flag cmdRun defines must appear in its help text with a description.
	src, err := os.ReadFile("run.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`fs\.(?:String|Bool|Int|Int64)?Var\(&?[a-zA-Z.]+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 10 {
		t.Fatalf("found only %d flag definitions", len(names))
	}
	for _, n := range names {
		if !strings.Contains(help, "-"+n[1]) {
			t.Errorf("--help does not document -%s", n[1])
		}
	}
	_ = flag.ErrHelp
}

func TestBadConfigHaltsNamingFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("run_dir: x\nsimilarity:\n  kk: 1\n"), 0o644)
	code, _, stderr := runCmd("run", "--config", path, "--log-format", "text", "--progress", "none")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:3:3") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd("version")
	if code != 0 || !strings.HasPrefix(out, "connectome "+stages.PipelineVersion) {
		t.Fatalf("%d %q", code, out)
	}
}

// TestExternalEmbeddingsMakeAMap runs similarity and report on embedding files made
// elsewhere, in an empty run directory: no cohort, no other stage.
func TestExternalEmbeddingsMakeAMap(t *testing.T) {
	requireGraphLibrary(t)
	dir := t.TempDir()
	files := writeTestEmbeddings(t, dir)
	runDir := filepath.Join(dir, "run")
	t.Chdir("../..") // config paths are relative to the working directory, as for a user
	// Both files follow one --embeddings, then more flags: the flag package alone would stop.
	code, _, stderr := runCmd("run", "--config", "configs/nlst-sybil.yaml", "--from", "similarity",
		"--embeddings", files[0], files[1], "--run-dir", runDir, "--progress", "none")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	edges, _, err := tables.ReadEdges(layout.New(runDir, pipeline.Shard{}).Edges())
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 2 * 8 * 5; len(edges) != want {
		t.Fatalf("%d edges, want %d (2 models × 2 kinds × 8 nodes × k 5)", len(edges), want)
	}
	if st, err := os.Stat(layout.New(runDir, pipeline.Shard{}).Page()); err != nil || st.Size() == 0 {
		t.Fatalf("no report: %v", err)
	}
}

// TestExternalEmbeddingsWithClinical: `--clinical FILE` gives a run from external embeddings
// its clinical data: the page's facets become available, and a bad row of the file is an item
// failure (exit status 3, listed by `connectome failures`) while the others are used.
func TestExternalEmbeddingsWithClinical(t *testing.T) {
	requireGraphLibrary(t)
	dir := t.TempDir()
	files := writeTestEmbeddings(t, dir)
	clinical := filepath.Join(dir, "clinical.csv")
	rows := "lesion_id,patient_id,age,sex,cancer_type,stage\n"
	for i := 0; i < 8; i++ {
		stage := strconv.Itoa(i % 7)
		if i == 5 {
			stage = "99" // neither the published index nor an AJCC code: this row fails
		}
		rows += fmt.Sprintf("L%d,P%d,%d,%s,%s,%s\n", i, i, 60+i, []string{"M", "F"}[i%2], []string{"8140", `"Squamous cell carcinoma, NOS"`}[i%2], stage)
	}
	if err := os.WriteFile(clinical, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	code, _, stderr := runCmd("run", "--from", "similarity", "--embeddings", files[0], files[1],
		"--clinical", clinical, "--run-dir", runDir, "--progress", "none")
	if code != 3 {
		t.Fatalf("exit %d, want 3 (an item failure):\n%s", code, stderr)
	}
	html, err := os.ReadFile(layout.New(runDir, pipeline.Shard{}).Page())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<script id="connectome-data" type="application/json">(.*?)</script>`).FindSubmatch(html)
	if m == nil {
		t.Fatal("no data block in the page")
	}
	var page struct {
		HasClinical bool `json:"hasClinical"`
		Facets      []struct {
			Key       string `json:"key"`
			Available bool   `json:"available"`
		} `json:"facets"`
	}
	if err := json.Unmarshal(m[1], &page); err != nil {
		t.Fatal(err)
	}
	avail := map[string]bool{}
	for _, f := range page.Facets {
		avail[f.Key] = f.Available
	}
	if !page.HasClinical || !avail["cancer"] || !avail["stage"] || !avail["sex"] || !avail["age"] || avail["race"] {
		t.Errorf("facets %v (hasClinical %v): want cancer, stage, sex and age available, race not", avail, page.HasClinical)
	}
	code, out, _ := runCmd("failures", "--run-dir", runDir)
	if code != 0 || !strings.Contains(out, "L5") || !strings.Contains(out, `stage "99"`) {
		t.Errorf("failures (exit %d):\n%s", code, out)
	}
}

// writeTestEmbeddings writes two models' embeddings of 8 nodes (dimension 4) under dir, as
// Arrow files made elsewhere would be, and returns their paths.
func writeTestEmbeddings(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for m, model := range []string{"A", "B"} {
		var rows []tables.Embedding
		for i := 0; i < 8; i++ {
			v := []float32{float32(i), float32(m + 1), float32(i % 3), 1}
			rows = append(rows, tables.Embedding{LesionID: fmt.Sprintf("L%d", i), PatientID: fmt.Sprintf("P%d", i), Model: model, Vector: v})
		}
		path := filepath.Join(dir, model+".arrow")
		if err := tables.WriteEmbeddings(memory.DefaultAllocator, path, rows, 4, arrow.Metadata{}); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	return files
}

// requireGraphLibrary fails the test under CI, and skips it elsewhere, when the test binary was
// built without the report's graph library (`make deps` fetches it before the tests build).
func requireGraphLibrary(t testing.TB) {
	t.Helper()
	if report.GraphLibraryEmbedded() {
		return
	}
	testenv.Missing(t, "the graph library %s is missing: run make deps", report.GraphLibraryFile)
}

// TestFailuresCommand: a run with a bad item, then `connectome failures` lists it and counts it.
func TestFailuresCommand(t *testing.T) {
	requireGraphLibrary(t)
	dir := t.TempDir()
	files := writeTestEmbeddings(t, dir)
	bad := filepath.Join(dir, "C.arrow")
	rows := []tables.Embedding{{LesionID: "L9", PatientID: "P9", Model: "A", Vector: []float32{float32(math.NaN()), 1, 1, 1}}}
	if err := tables.WriteEmbeddings(memory.DefaultAllocator, bad, rows, 4, arrow.Metadata{}); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	code, _, stderr := runCmd("run", "--from", "similarity", "--embeddings", files[0]+","+bad, "--run-dir", runDir, "--progress", "none")
	if code != 3 {
		t.Fatalf("run with a NaN embedding: exit %d, want 3\n%s", code, stderr)
	}
	code, out, _ := runCmd("failures", "--run-dir", runDir)
	if code != 0 || !strings.Contains(out, "similarity") || !strings.Contains(out, "L9") || !strings.Contains(out, "\n1 failures\n") {
		t.Fatalf("failures: exit %d\n%s", code, out)
	}
	if code, out, _ := runCmd("failures", "--run-dir", runDir, "--stage", "report"); code != 0 || !strings.Contains(out, "\n0 failures\n") {
		t.Errorf("failures of another stage: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd("failures", "--run-dir", filepath.Join(dir, "nothing")); code != 1 {
		t.Errorf("failures of a missing run: exit %d, want 1", code)
	}
}

// TestBadFlagCombinationsExit2: flags that the run would ignore or misuse are usage errors
// naming the flag (issue 20 items 8 and 10).
func TestBadFlagCombinationsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--workers", "-3"}, "--workers -3"},
		{[]string{"run", "--max-bytes-billed", "-1"}, "--max-bytes-billed -1"},
		{[]string{"run", "--embeddings", "a.arrow"}, "--embeddings feeds similarity"},
		{[]string{"run", "--from", "embed", "--embeddings", "a.arrow"}, "--embeddings feeds similarity"},
		{[]string{"run", "--only", "cohort", "--embeddings", "a.arrow"}, "--embeddings feeds similarity"},
	} {
		code, _, stderr := runCmd(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, want 2 with %q:\n%s", c.args, code, c.want, stderr)
		}
	}
}
