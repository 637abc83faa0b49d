package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		ok   bool
	}{
		{"defaults", func(*Settings) {}, true},
		{"no title", func(s *Settings) { s.Title = "" }, false},
		{"model info", func(s *Settings) { s.Models = []ModelInfo{{Name: "A"}, {Name: "B"}} }, true},
		{"nameless model", func(s *Settings) { s.Models = []ModelInfo{{Title: "x"}} }, false},
		{"model twice", func(s *Settings) { s.Models = []ModelInfo{{Name: "A"}, {Name: "A"}} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			tc.edit(&s)
			if err := s.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestStageIdentity(t *testing.T) {
	st := New(DefaultSettings())
	var _ pipeline.Stage = st
	if st.Name() != "report" || st.Version() != "2" {
		t.Errorf("name %q version %q", st.Name(), st.Version())
	}
	if _, ok := st.Settings().(Settings); !ok {
		t.Errorf("Settings() is %T", st.Settings())
	}
}

// runErr runs the stage directly (not through the runner) and returns its error.
func runErr(t *testing.T, runDir string, s Settings) error {
	t.Helper()
	sc := &pipeline.Context{RunDir: runDir, Dir: filepath.Join(runDir, "report"), Workers: 1, Log: slog.New(slog.DiscardHandler)}
	if err := os.MkdirAll(sc.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return New(s).Run(context.Background(), sc)
}

func TestMissingGraphLibraryHalts(t *testing.T) {
	runDir := t.TempDir()
	synthetic(t, 10, 1, 3, 1).write(t, runDir)
	s := DefaultSettings()
	s.GraphLibrary = filepath.Join(t.TempDir(), "absent.min.js")
	err := runErr(t, runDir, s)
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "absent.min.js") {
		t.Fatalf("err = %v, want a halt that names the missing file", err)
	}
}

func TestMissingEdgesHalts(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "lib.js")
	if err := os.WriteFile(lib, []byte("window.echarts = {};"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.GraphLibrary = lib
	err := runErr(t, t.TempDir(), s)
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "similarity") {
		t.Fatalf("err = %v, want a halt naming the similarity stage", err)
	}
}

func TestLibraryWithScriptEndRefused(t *testing.T) {
	runDir := t.TempDir()
	synthetic(t, 10, 1, 3, 1).write(t, runDir)
	lib := filepath.Join(t.TempDir(), "lib.js")
	if err := os.WriteFile(lib, []byte(`var s = "</SCRIPT>";`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.GraphLibrary = lib
	if err := runErr(t, runDir, s); err == nil || !strings.Contains(err.Error(), "inlined") {
		t.Fatalf("err = %v, want a refusal to inline", err)
	}
	if _, err := os.Stat(layout.New(runDir, pipeline.Shard{}).Page()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a page was left behind: %v", err)
	}
}

func TestCheckInlineScript(t *testing.T) {
	for _, tc := range []struct {
		src string
		ok  bool
	}{
		{`var a = 1 < 2 && 3 > 2;`, true},
		{`x = "</script>"`, false},
		{`x = "</ScRiPt "`, false},
		{`x = "<!-- y"`, false},
		{`x = "<script>"`, false},
		{`x = "<\/script>"`, true},
	} {
		if err := checkInlineScript([]byte(tc.src)); (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.src, err, tc.ok)
		}
	}
}

func TestAgeBand(t *testing.T) {
	for age, want := range map[int32]string{-1: "", 40: "< 55", 55: "55–59", 59: "55–59", 60: "60–64", 74: "70–74", 75: "75+", 90: "75+"} {
		if got := ageBand(age); got != want {
			t.Errorf("ageBand(%d) = %q, want %q", age, got, want)
		}
	}
	bands := []string{"75+", "60–64", "< 55", "55–59"}
	slices.SortFunc(bands, func(a, b string) int { return ageBandStart(a) - ageBandStart(b) })
	if !slices.Equal(bands, []string{"< 55", "55–59", "60–64", "75+"}) {
		t.Errorf("band order %v", bands)
	}
}

func TestCancerFamily(t *testing.T) {
	for in, want := range map[string]string{
		"Adenocarcinoma, NOS": "Adenocarcinoma", "Lepidic adenocarcinoma": "Adenocarcinoma",
		"Squamous cell carcinoma, NOS": "Squamous cell", "Small cell carcinoma, NOS": "Small cell",
		"Sq. cell carcinoma, keratinizing, NOS": "Squamous cell", "Adenosquamous carcinoma": "Squamous cell",
		"Combined small cell carcinoma": "Small cell", "Neuroendocrine carcinoma": "Other",
		"Non-small cell carcinoma": "Other", "Large cell neuroendocrine carcinoma": "Large cell",
		"Bronchioloalveolar carcinoma": "Adenocarcinoma", "Carcinoid tumor": "Carcinoid", "": "",
	} {
		if got := cancerFamily(in); got != want {
			t.Errorf("cancerFamily(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildFacets(t *testing.T) {
	patients := []string{"p1", "p2", "p3", "p4", "p5"}
	clin := map[string]*tables.Clinical{
		"p1": {PatientID: "p1", Age: 57, Sex: "M", Race: "White", Smoking: "Current", CancerType: "Adenocarcinoma, NOS", StageCode: "2", Stage: "IIA"},
		"p2": {PatientID: "p2", Age: 71, Sex: "F", Race: "Unknown", Smoking: "Former", CancerType: "Squamous cell carcinoma", StageCode: "0", Stage: "IA"},
		"p3": {PatientID: "p3", Age: -1, Sex: "", Race: "White", Smoking: "Current", CancerType: "", StageCode: "10", Stage: "IV"},
		"p4": {PatientID: "p4", Age: 62, Sex: "M", Race: "Asian", Smoking: "Current", CancerType: "Adenocarcinoma, NOS", StageCode: "2", Stage: "IIA"},
		// p5 has no clinical row.
	}
	rows := make([]*tables.Clinical, len(patients))
	for i, p := range patients {
		rows[i] = clin[p]
	}
	fs := buildFacets(rows)
	byKey := map[string]facet{}
	for _, f := range fs {
		byKey[f.Key] = f
		if !f.Available {
			t.Errorf("facet %s not available", f.Key)
		}
		if len(f.Values) != len(patients) {
			t.Fatalf("facet %s has %d values", f.Key, len(f.Values))
		}
		total := 0
		for _, c := range f.Categories {
			total += c.Count
		}
		if total != len(patients) {
			t.Errorf("facet %s counts sum to %d", f.Key, total)
		}
	}
	names := func(f facet) []string {
		var out []string
		for _, c := range f.Categories {
			out = append(out, c.Name)
		}
		return out
	}
	// Ordinal facets follow the codes, not the alphabet; unknown is last.
	if got := names(byKey["stage"]); !slices.Equal(got, []string{"IA", "IIA", "IV", "Unknown"}) {
		t.Errorf("stage categories %v", got)
	}
	if got := names(byKey["age"]); !slices.Equal(got, []string{"55–59", "60–64", "70–74", "Unknown"}) {
		t.Errorf("age categories %v", got)
	}
	// "Unknown" in the data joins the Unknown category instead of making a second one.
	if got := names(byKey["race"]); !slices.Equal(got, []string{"White", "Asian", "Unknown"}) {
		t.Errorf("race categories %v", got)
	}
	race := byKey["race"]
	if race.Categories[race.Values[1]].Name != "Unknown" || race.Categories[race.Values[4]].Name != "Unknown" {
		t.Errorf("p2 and p5 should be Unknown race")
	}
	if got := names(byKey["sex"]); !slices.Equal(got, []string{"Male", "Female", "Unknown"}) {
		t.Errorf("sex categories %v", got)
	}
	for _, f := range fs {
		seen := map[string]bool{}
		for _, c := range f.Categories {
			if seen[c.Color] && c.Name != "Unknown" {
				t.Errorf("facet %s reuses colour %s", f.Key, c.Color)
			}
			seen[c.Color] = true
		}
	}

	none := buildFacets(nil)
	if len(none) != 6 {
		t.Fatalf("%d facets without clinical data, want 6", len(none))
	}
	for _, f := range none {
		if f.Available || f.Values != nil {
			t.Errorf("facet %s available without clinical data", f.Key)
		}
	}
}

func TestCategorizeOverflow(t *testing.T) {
	var raw []string
	for i := range 40 {
		for range 40 - i { // category i has 40-i members: a strict frequency order
			raw = append(raw, string(rune('A'+i%26))+string(rune('a'+i/26)))
		}
	}
	cats, vals := categorize(raw, false, nil)
	if len(cats) != len(categoricalPalette) || cats[len(cats)-1].Name != otherLabel {
		t.Fatalf("%d categories, last %q: want %d ending in Other", len(cats), cats[len(cats)-1].Name, len(categoricalPalette))
	}
	if cats[0].Name != "Aa" || cats[0].Count != 40 {
		t.Errorf("most frequent first: got %+v", cats[0])
	}
	if cats[vals[len(vals)-1]].Name != otherLabel {
		t.Errorf("rarest value not in Other")
	}
}

func TestPreviewDataURI(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.png")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, ctLikeImage(384, 128, 1)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	uri, err := previewDataURI(p, 96)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(uri, prefix) {
		t.Fatalf("uri %.40q", uri)
	}
	raw, err := base64.StdEncoding.DecodeString(uri[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 32 {
		t.Errorf("downscaled to %v, want 96×32 (aspect kept)", b)
	}
	if _, ok := img.(*image.Gray); !ok {
		t.Errorf("grey preview became %T", img)
	}
	// A small image is kept as it is.
	small := downscale(image.NewGray(image.Rect(0, 0, 20, 10)), 96)
	if small.Bounds().Dx() != 20 {
		t.Errorf("small image resized to %v", small.Bounds())
	}
	if _, err := previewDataURI(filepath.Join(dir, "absent.png"), 96); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent preview: %v", err)
	}
}

// pageJSON extracts and decodes the embedded data block of a rendered page.
func pageJSON(t testing.TB, html []byte) *pageData {
	t.Helper()
	re := regexp.MustCompile(`(?s)<script id="connectome-data" type="application/json">(.*?)</script>`)
	m := re.FindSubmatch(html)
	if m == nil {
		t.Fatal("no data block in the page")
	}
	var d pageData
	if err := json.Unmarshal(m[1], &d); err != nil {
		t.Fatalf("data block is not JSON: %v", err)
	}
	return &d
}

// TestRenderEscapes: whatever the strings, the data block decodes back to them, and no
// string ends the script element early.
func TestRenderEscapes(t *testing.T) {
	hostile := []string{`</script><img src=x onerror=alert(1)>`, `<!--`, `]]>`, "\u2028\u2029", `"'&<>`, `</SCRIPT >`}
	d := &pageData{Title: "t", Nodes: nodeColumns{ID: hostile, Patient: hostile}}
	var buf bytes.Buffer
	if err := renderPage(&buf, d, []byte("window.echarts={};")); err != nil {
		t.Fatal(err)
	}
	html := buf.Bytes()
	if n := bytes.Count(bytes.ToLower(html), []byte("</script")); n != 3 {
		t.Errorf("%d </script tags, want 3 (data, library, page script)", n)
	}
	got := pageJSON(t, html)
	if !slices.Equal(got.Nodes.ID, hostile) {
		t.Errorf("ids round-trip as %q", got.Nodes.ID)
	}
	csp := regexp.MustCompile(`http-equiv="Content-Security-Policy" content="([^"]*)"`).FindSubmatch(html)
	if csp == nil || !bytes.Contains(csp[1], []byte("default-src &#39;none&#39;")) || bytes.Contains(csp[1], []byte("unsafe-inline&#39; &#39;sha")) {
		t.Errorf("CSP %q", csp)
	}
}

// FuzzRenderEscapes: no id can break out of the JSON block or change other data.
func FuzzRenderEscapes(f *testing.F) {
	for _, s := range []string{"L1", `</script><script>alert(1)</script>`, "<!--<script>", "\x00\xff", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		d := &pageData{Title: id, Nodes: nodeColumns{ID: []string{id, "after"}, Patient: []string{id, "p"}}}
		var buf bytes.Buffer
		if err := renderPage(&buf, d, []byte("window.echarts={};")); err != nil {
			t.Fatal(err)
		}
		got := pageJSON(t, buf.Bytes())
		if len(got.Nodes.ID) != 2 || got.Nodes.ID[1] != "after" {
			t.Fatalf("data block changed: %q", got.Nodes.ID)
		}
		// JSON replaces each invalid UTF-8 byte by U+FFFD, as ranging over the string does.
		var want strings.Builder
		for _, r := range id {
			want.WriteRune(r)
		}
		if got.Nodes.ID[0] != want.String() {
			t.Fatalf("id %q round-trips as %q", id, got.Nodes.ID[0])
		}
	})
}

func TestAgreement(t *testing.T) {
	f := synthetic(t, 40, 3, 5, 9)
	// From the table: its numbers, symmetric, one matrix per k.
	rows := []tables.Agreement{
		{ModelA: "ModelA", ModelB: "ModelB", K: 5, MeanOverlap: 0.25},
		{ModelA: "ModelA", ModelB: "ModelA", K: 5, MeanOverlap: 1},
		{ModelA: "ModelB", ModelB: "ModelC", K: 10, MeanOverlap: 0.5},
		{ModelA: "Gone", ModelB: "ModelC", K: 5, MeanOverlap: 0.9},
	}
	in := &inputs{edges: f.edges, lesions: f.lesions, clinical: clinicalByPatient(f.clinical), agreement: rows}
	d, err := buildPage(context.Background(), DefaultSettings(), in, 2)
	if err != nil {
		t.Fatal(err)
	}
	a := d.Agreement
	if a == nil || a.Source != "agreement.arrow" || !slices.Equal(a.K, []int32{5, 10}) {
		t.Fatalf("agreement %+v", a)
	}
	if v := a.Values[0][1][0]; v == nil || *v != 0.25 {
		t.Errorf("B×A at k=5 = %v, want 0.25 (mirrored)", v)
	}
	if v := a.Values[0][2][2]; v == nil || *v != 1 {
		t.Errorf("C×C at k=5 = %v, want 1 (the diagonal)", v)
	}
	if a.Values[0][0][2] != nil {
		t.Errorf("A×C at k=5 should be unknown")
	}
	// From the edges: the diagonal is 1 and the rest in [0, 1].
	in.agreement = nil
	d, err = buildPage(context.Background(), DefaultSettings(), in, 2)
	if err != nil {
		t.Fatal(err)
	}
	a = d.Agreement
	if a.Source != "edges" || len(a.Values) != 1 {
		t.Fatalf("agreement %+v", a)
	}
	for i := range 3 {
		for j := range 3 {
			v := a.Values[0][i][j]
			if v == nil || *v < 0 || *v > 1 || (i == j && *v != 1) {
				t.Errorf("agreement[%d][%d] = %v", i, j, v)
			}
		}
	}
}

// TestBuildPageNodes: nodes follow the lesion table; edge endpoints it lacks are added;
// every edge refers to a node; layouts cover every node.
func TestBuildPageNodes(t *testing.T) {
	f := synthetic(t, 30, 2, 3, 4)
	f.edges = append(f.edges, tables.Edge{Model: "ModelA", Kind: "closest", QueryLesionID: "L00000", MatchLesionID: "EXTRA", MatchPatientID: "PX", Rank: 4, SimilarityPct: 50, CosineDistance: 0.5})
	in := &inputs{edges: f.edges, lesions: f.lesions, clinical: clinicalByPatient(f.clinical)}
	s := DefaultSettings()
	s.Models = []ModelInfo{{Name: "ModelB", Title: "Bee"}}
	d, err := buildPage(context.Background(), s, in, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Nodes.ID) != 31 || d.Nodes.ID[30] != "EXTRA" || d.Nodes.Patient[30] != "PX" || d.Nodes.ID[0] != "L00000" {
		t.Fatalf("nodes %d, last %q", len(d.Nodes.ID), d.Nodes.ID[len(d.Nodes.ID)-1])
	}
	// Registry order first: ModelB has info and comes first.
	if d.Models[0].Name != "ModelB" || d.Models[0].Title != "Bee" || d.Models[1].Name != "ModelA" {
		t.Errorf("model order %q %q", d.Models[0].Name, d.Models[1].Name)
	}
	for _, m := range d.Models {
		for _, es := range []*edgeSet{m.Closest, m.Farthest} {
			if es == nil || len(es.Layout) != 2*31 {
				t.Fatalf("model %s: missing edges or layout", m.Name)
			}
			for i := range es.Q {
				if es.Q[i] < 0 || es.Q[i] >= 31 || es.M[i] < 0 || es.M[i] >= 31 {
					t.Fatalf("edge %d out of range", i)
				}
			}
		}
	}
	if d.K != 4 {
		t.Errorf("k = %d, want 4 (largest rank)", d.K)
	}
}

// TestPageSize289x9: 289 nodes × 9 models with QC previews of noise (incompressible, the
// worst case) stays under 5 MB.
func TestPageSize289x9(t *testing.T) {
	f := synthetic(t, 289, 9, 5, 5)
	f.previews = map[string]image.Image{}
	for i, l := range f.lesions {
		f.previews[l.LesionID] = noiseImage(384, 128, uint64(i))
	}
	runDir := t.TempDir()
	f.write(t, runDir)
	start := time.Now()
	htmlPath := runStage(t, runDir, testSettings(t))
	st, err := os.Stat(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("289 nodes × 9 models with previews: %d bytes, built in %v", st.Size(), time.Since(start).Round(time.Millisecond))
	if st.Size() >= 5_000_000 {
		t.Errorf("page is %d bytes, want < 5 MB", st.Size())
	}
	html, _ := os.ReadFile(htmlPath)
	d := pageJSON(t, html)
	if len(d.Nodes.Preview) != 289 {
		t.Fatalf("%d previews, want 289", len(d.Nodes.Preview))
	}
	for i, p := range d.Nodes.Preview {
		if !strings.HasPrefix(p, "data:image/png;base64,") {
			t.Fatalf("preview %d not embedded: %.30q", i, p)
		}
	}
	m, ok, err := pipeline.ReadMarker(runDir, "report", pipeline.Shard{})
	if err != nil || !ok || m.Counts["nodes"] != 289 || m.Counts["previews"] != 289 || m.Counts["models"] != 9 {
		t.Errorf("marker %+v ok=%v err=%v", m, ok, err)
	}
}
