package report

import (
	"fmt"
	"image"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"connectome/internal/tables"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"connectome/stages/report/reporttest"
)

// edgeKeys returns "query→match#rank" for the fixture's edges of one view, sorted.
func edgeKeys(edges []tables.Edge, model, kind string) []string {
	var out []string
	for _, e := range edges {
		if e.Model == model && e.Kind == kind {
			out = append(out, fmt.Sprintf("%s→%s#%d", e.QueryLesionID, e.MatchLesionID, e.Rank))
		}
	}
	slices.Sort(out)
	return out
}

// drawnKeys returns the same keys for the edges the chart currently draws.
func drawnKeys(t testing.TB, b *reporttest.Browser) []string {
	rows := reporttest.Eval[[][]any](t, b, `__connectome.edges()`)
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%v→%v#%v", r[0], r[1], r[2])
	}
	slices.Sort(out)
	return out
}

func TestPageInBrowser(t *testing.T) {
	f := synthetic(t, 120, 3, 5, 1)
	f.previews = map[string]image.Image{}
	for _, l := range f.lesions[:10] {
		f.previews[l.LesionID] = ctLikeImage(384, 128, 1)
	}
	runDir := t.TempDir()
	f.write(t, runDir)
	htmlPath := runStage(t, runDir, testSettings(t))

	b := reporttest.New(t)
	b.Open(t, htmlPath, "")

	// Node count equals the lesion table; the first model's closest edges are drawn.
	nodes := reporttest.Eval[int](t, b, `__connectome.nodeCount()`)
	stat := reporttest.Eval[int](t, b, `Number(document.getElementById('stats').dataset.nodes)`)
	if nodes != len(f.lesions) || stat != len(f.lesions) {
		t.Errorf("drawn nodes %d, stats %d, want %d", nodes, stat, len(f.lesions))
	}
	if got, want := drawnKeys(t, b), edgeKeys(f.edges, "ModelA", "closest"); !slices.Equal(got, want) {
		t.Fatalf("initial edges: %d drawn, want %d (ModelA closest)", len(got), len(want))
	}

	// Switching the model changes the edges to that model's.
	b.Choose(t, "#model", "1")
	got := drawnKeys(t, b)
	if want := edgeKeys(f.edges, "ModelB", "closest"); !slices.Equal(got, want) {
		t.Errorf("after model switch: edges are not ModelB's closest")
	}
	if slices.Equal(got, edgeKeys(f.edges, "ModelA", "closest")) {
		t.Errorf("model switch did not change the edges")
	}

	// The farthest toggle draws the farthest edges, and back.
	b.Click(t, "#kind-farthest")
	if got, want := drawnKeys(t, b), edgeKeys(f.edges, "ModelB", "farthest"); !slices.Equal(got, want) {
		t.Errorf("farthest toggle: edges are not ModelB's farthest")
	}
	pressed := reporttest.Eval[string](t, b, `document.getElementById('kind-farthest').getAttribute('aria-pressed')`)
	if pressed != "true" {
		t.Errorf("farthest button aria-pressed = %q", pressed)
	}
	b.Click(t, "#kind-closest")

	// Clicking a node opens its panel with its matches (the gallery), in rank order, and who
	// lists it.
	node := reporttest.Eval[int](t, b, isolatedNodeJS)
	if node < 0 {
		t.Fatal("no isolated node found to click")
	}
	clickNode(t, b, node)
	id := f.lesions[node].LesionID
	b.Do(t, chromedp.WaitVisible(chromedp.CSS("#panel")))
	title := b.Text(t, "#panel-title")
	if title != id {
		t.Fatalf("clicked node %d (%s): panel shows %q", node, id, title)
	}
	out := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('#gallery li.card:not(.self) .cid')].map(b => b.textContent)`)
	in := reporttest.Eval[[]string](t, b, `[...document.querySelectorAll('table.in-matches button')].map(b => b.textContent)`)
	var wantOut, wantIn []string
	for r := int32(1); r <= 5; r++ {
		for _, e := range f.edges {
			if e.Model == "ModelB" && e.Kind == "closest" && e.QueryLesionID == id && e.Rank == r {
				wantOut = append(wantOut, e.MatchLesionID)
			}
		}
	}
	for _, e := range f.edges {
		if e.Model == "ModelB" && e.Kind == "closest" && e.MatchLesionID == id {
			wantIn = append(wantIn, e.QueryLesionID)
		}
	}
	slices.Sort(in)
	slices.Sort(wantIn)
	if !slices.Equal(out, wantOut) {
		t.Errorf("outgoing matches %v, want %v", out, wantOut)
	}
	if !slices.Equal(in, wantIn) {
		t.Errorf("incoming matches %v, want %v", in, wantIn)
	}
	pct := b.Text(t, "#gallery li.card:nth-child(2) .pct")
	if !strings.HasSuffix(pct, "%") {
		t.Errorf("similarity cell %q", pct)
	}
	href := reporttest.Eval[string](t, b, `document.getElementById('viewer-link').getAttribute('href')`)
	l := f.lesions[node]
	wantHref := "https://viewer.imaging.datacommons.cancer.gov/v3/viewer/?StudyInstanceUIDs=" + l.StudyInstanceUID +
		"&SeriesInstanceUIDs=" + l.SeriesInstanceUID + "," + l.SRSeriesInstanceUID
	if href != wantHref {
		t.Errorf("viewer link %q, want %q", href, wantHref)
	}

	// The URL now names the view; loading it restores the same view.
	b.Choose(t, "#facet", "stage")
	loc := reporttest.Eval[string](t, b, `location.href`)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("model") != "ModelB" || q.Get("kind") != "closest" || q.Get("facet") != "stage" || q.Get("node") != id {
		t.Errorf("URL %q does not name the view", loc)
	}
	shot := b.Screenshot(t, "report-page.png")
	keepScreenshot(t, shot)

	b2 := reporttest.New(t)
	b2.Open(t, htmlPath, "model=ModelC&kind=farthest&facet=sex&node="+url.QueryEscape(f.lesions[3].LesionID))
	st := reporttest.Eval[struct {
		Model  int    `json:"model"`
		Kind   string `json:"kind"`
		Facet  string `json:"facet"`
		Node   int    `json:"node"`
		Search string `json:"search"`
		Title  string `json:"title"`
		Facets string `json:"facetSel"`
	}](t, b2, `({...__connectome.state, search: location.search, title: document.getElementById('panel-title').textContent, facetSel: document.getElementById('facet').value})`)
	if st.Model != 2 || st.Kind != "farthest" || st.Facet != "sex" || st.Node != 3 || st.Title != f.lesions[3].LesionID || st.Facets != "sex" {
		t.Errorf("state from URL: %+v", st)
	}
	rq, _ := url.ParseQuery(strings.TrimPrefix(st.Search, "?"))
	if rq.Get("model") != "ModelC" || rq.Get("kind") != "farthest" || rq.Get("facet") != "sex" || rq.Get("node") != f.lesions[3].LesionID {
		t.Errorf("URL after load %q does not round-trip", st.Search)
	}
	if got, want := drawnKeys(t, b2), edgeKeys(f.edges, "ModelC", "farthest"); !slices.Equal(got, want) {
		t.Errorf("edges after URL load are not ModelC farthest")
	}
	// Lesion 3 has a QC preview: the gallery shows it from the embedded data.
	if src := reporttest.Eval[string](t, b2, `(document.querySelector('#gallery li.self img.crop') || {}).src || ''`); !strings.HasPrefix(src, "data:image/png;base64,") {
		t.Errorf("preview src %.40q", src)
	}
	keepScreenshot(t, b2.Screenshot(t, "report-page-url.png"))

	// Search finds a patient id and selects its lesion.
	b2.Do(t, chromedp.SendKeys(chromedp.CSS("#search"), f.lesions[7].PatientID+"\r"))
	title = b2.Text(t, "#panel-title")
	if title != f.lesions[7].LesionID {
		t.Errorf("search %s: panel shows %q", f.lesions[7].PatientID, title)
	}
	legend := reporttest.Eval[[]string](t, b2, `[...document.querySelectorAll('#legend .item span:nth-child(2)')].map(s => s.textContent)`)
	if !slices.Equal(legend, []string{"Female", "Male"}) && !slices.Equal(legend, []string{"Male", "Female"}) {
		t.Errorf("sex legend %v", legend)
	}

	// The model dialog and the agreement heatmap open and show every model.
	b2.Click(t, "#model-info-btn")
	rows := reporttest.Eval[int](t, b2, `document.querySelectorAll('#model-table tr').length`)
	if rows != 1+3 {
		t.Errorf("model table rows %d, want 4", rows)
	}
	reporttest.Eval[chromedp.Void](t, b2, `document.getElementById('model-dialog').close()`)
	b2.Click(t, "#agreement-btn")
	cells := reporttest.Eval[[]string](t, b2, `[...document.querySelectorAll('#agreement-table td.cell')].map(c => c.textContent)`)
	if len(cells) != 9 || cells[0] != "1.00" {
		t.Errorf("agreement cells %v", cells)
	}
	b.CheckClean(t)
	b2.CheckClean(t)
}

// TestPageEdgesOnly is `connectome run --from similarity --embeddings FILE`: no cohort and
// no clinical tables. The map still works and every facet is greyed out.
func TestPageEdgesOnly(t *testing.T) {
	f := synthetic(t, 60, 2, 5, 2)
	f.noLesions, f.noClinical = true, true
	runDir := t.TempDir()
	f.write(t, runDir)
	htmlPath := runStage(t, runDir, testSettings(t))
	b := reporttest.New(t)
	b.Open(t, htmlPath, "")
	res := reporttest.Eval[struct {
		Nodes    int      `json:"nodes"`
		Disabled []bool   `json:"disabled"`
		Legend   string   `json:"legend"`
		Viewer   bool     `json:"viewer"`
		Labels   []string `json:"labels"`
	}](t, b, `(() => { const o = [...document.querySelectorAll('#facet option')];
	  return { nodes: __connectome.nodeCount(), disabled: o.map(x => x.disabled),
	    labels: o.map(x => x.textContent), legend: document.getElementById('legend').textContent }; })()`)
	if res.Nodes != 60 {
		t.Errorf("nodes %d, want 60", res.Nodes)
	}
	if len(res.Disabled) != 6 || slices.Contains(res.Disabled, false) {
		t.Errorf("facet options disabled = %v, want all 6 disabled", res.Disabled)
	}
	if !strings.Contains(res.Legend, "No clinical data") {
		t.Errorf("legend %q", res.Legend)
	}
	if got, want := drawnKeys(t, b), edgeKeys(f.edges, "ModelA", "closest"); !slices.Equal(got, want) {
		t.Errorf("edges-only page does not draw ModelA closest")
	}
	b.Do(t, chromedp.SendKeys(chromedp.CSS("#search"), "L00004\r"))
	title := b.Text(t, "#panel-title")
	viewer := reporttest.Eval[int](t, b, `document.querySelectorAll('#viewer-link').length`)
	if title != "L00004" || viewer != 0 {
		t.Errorf("panel %q, viewer links %d (want none without lesions table)", title, viewer)
	}
	b.CheckClean(t)
}

// TestPageHostileStrings puts markup in ids, clinical labels and a model name: it must show
// as text and run nothing.
func TestPageHostileStrings(t *testing.T) {
	const evil = `</script><img src=x onerror=alert(1)>`
	f := synthetic(t, 30, 2, 3, 3)
	rename := map[string]string{}
	for i := range f.lesions {
		if i%3 == 0 {
			rename[f.lesions[i].LesionID] = fmt.Sprintf("%s%d", evil, i)
		}
	}
	for i := range f.lesions {
		if r, ok := rename[f.lesions[i].LesionID]; ok {
			f.lesions[i].LesionID = r
			f.lesions[i].PatientID = r + "p"
			f.clinical[i].PatientID = r + "p"
		}
		f.clinical[i].Race = evil
		f.clinical[i].CancerType = `"><svg onload=alert(2)>`
		f.clinical[i].Stage = `<b onmouseover=alert(3)>IV</b>`
		f.lesions[i].StudyInstanceUID = `javascript:alert(4)//`
	}
	for i := range f.edges {
		e := &f.edges[i]
		if r, ok := rename[e.QueryLesionID]; ok {
			e.QueryLesionID, e.QueryPatientID = r, r+"p"
		}
		if r, ok := rename[e.MatchLesionID]; ok {
			e.MatchLesionID, e.MatchPatientID = r, r+"p"
		}
		if e.Model == "ModelB" {
			e.Model = `<img src=y onerror=alert(5)>`
		}
	}
	runDir := t.TempDir()
	f.write(t, runDir)
	s := testSettings(t)
	s.Title = evil
	s.Models = []ModelInfo{{Name: `<img src=y onerror=alert(5)>`, Title: evil, Description: evil, Reference: `javascript:alert(6)`, Citation: evil}}
	htmlPath := runStage(t, runDir, s)

	raw, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "<img src=x") || strings.Contains(string(raw), "<svg onload") {
		t.Fatal("hostile markup appears unescaped in the HTML")
	}

	b := reporttest.New(t)
	if _, err := chromedp.Call(b.Ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__pwned = []; for (const f of ['alert','confirm','prompt']) window[f] = (x) => window.__pwned.push(f + ':' + x);`,
	}); err != nil {
		t.Fatal(err)
	}
	b.Open(t, htmlPath, "facet=race&node="+url.QueryEscape(f.lesions[0].LesionID))
	title := b.Text(t, "#panel-title")
	if title != f.lesions[0].LesionID {
		t.Errorf("panel title %q, want the hostile id as text", title)
	}
	hoverNode(t, b, 0)
	time.Sleep(300 * time.Millisecond)
	tip := reporttest.Eval[string](t, b, `[...document.querySelectorAll('.tt')].map(e => e.textContent).join(' ')`)
	b.Click(t, "#model-info-btn")
	cite := reporttest.Eval[string](t, b, `document.querySelector('#model-table textarea') ? document.querySelector('#model-table textarea').value : ''`)
	reporttest.Eval[chromedp.Void](t, b, `document.getElementById('model-dialog').close()`)
	b.Click(t, "#agreement-btn")
	reporttest.Eval[chromedp.Void](t, b, `document.getElementById('agreement-dialog').close()`)
	b.Choose(t, "#model", "1")
	time.Sleep(200 * time.Millisecond)

	res := reporttest.Eval[struct {
		Pwned    []string `json:"pwned"`
		Imgs     int      `json:"imgs"`
		Svgs     int      `json:"svgs"`
		Bolds    int      `json:"bolds"`
		Legend   string   `json:"legend"`
		Clinical string   `json:"clinical"`
		Title    string   `json:"title"`
		Options  []string `json:"options"`
		JSLinks  int      `json:"jsLinks"`
	}](t, b, `({
	  pwned: window.__pwned,
	  imgs: [...document.querySelectorAll('img')].filter(i => !i.src.startsWith('data:')).length,
	  svgs: document.querySelectorAll('svg[onload], [onerror], [onmouseover]').length,
	  bolds: document.querySelectorAll('#panel b, #legend b').length,
	  legend: document.getElementById('legend').textContent,
	  clinical: document.getElementById('clinical').textContent,
	  title: document.title,
	  options: [...document.querySelectorAll('#model option')].map(o => o.textContent),
	  jsLinks: [...document.querySelectorAll('a')].filter(a => a.protocol === 'javascript:').length,
	})`)
	if len(res.Pwned) > 0 {
		t.Errorf("script ran: %v", res.Pwned)
	}
	if res.Imgs != 0 || res.Svgs != 0 || res.Bolds != 0 || res.JSLinks != 0 {
		t.Errorf("injected elements: %d img, %d handlers, %d <b>, %d javascript: links", res.Imgs, res.Svgs, res.Bolds, res.JSLinks)
	}
	if !strings.Contains(res.Legend, evil) || !strings.Contains(res.Clinical, `"><svg onload=alert(2)>`) || res.Title != evil {
		t.Errorf("hostile strings not shown as text: legend %q, clinical %q, title %q", res.Legend, res.Clinical, res.Title)
	}
	if !slices.Contains(res.Options, `ModelA`) || !slices.ContainsFunc(res.Options, func(o string) bool { return strings.HasPrefix(o, `<img src=y onerror=alert(5)>`) }) {
		t.Errorf("model options %q", res.Options)
	}
	if !strings.Contains(tip, evil) {
		t.Errorf("tooltip %q does not show the hostile id as text", tip)
	}
	if cite != evil {
		t.Errorf("citation %q", cite)
	}
	b.Screenshot(t, "report-hostile.png")
	b.CheckClean(t)
}
