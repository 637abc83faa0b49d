package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image"
	"image/png"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"connectome/stages/report/reporttest"
)

// The tests of issue 17's views, in chromium with every request blocked: the look-alike
// gallery, the compare view, round nodes, edge labels and edge tooltips, keyboard use,
// "Save picture", accessibility. Screenshots of each view go to $TEST_ARTIFACTS.

// galleryFixture is a 120-node, 3-model map with a QC preview for every lesion.
func galleryFixture(t *testing.T) (*fixture, string, *pageData) {
	t.Helper()
	f := synthetic(t, 120, 3, 5, 1)
	f.previews = map[string]image.Image{}
	for i, l := range f.lesions {
		f.previews[l.LesionID] = ctLikeImage(384, 128, uint64(i))
	}
	runDir := t.TempDir()
	f.write(t, runDir)
	htmlPath := runStage(t, runDir, testSettings(t))
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	return f, htmlPath, pageJSON(t, html)
}

// nodeShapesJS measures every drawn node symbol of the series 'g' in screen pixels: the
// bounding box of its path after all transforms (the canvas hit-box).
const nodeShapesJS = `(() => {
  const s = __connectome.chart.getModel().getSeries().find((s) => s.id === 'g');
  const data = s.getData(), out = [];
  data.each((i) => {
    const g = data.getItemGraphicEl(i);
    if (!g) return;
    const path = g.childAt ? g.childAt(0) : g;
    const r = path.getBoundingRect().clone();
    r.applyTransform(path.getComputedTransform());
    out.push([r.width, r.height]);
  });
  return out;
})()`

// checkRound fails unless every node symbol is as wide as it is high.
func checkRound(t *testing.T, b *reporttest.Browser, n int) {
	t.Helper()
	shapes := reporttest.Eval[[][2]float64](t, b, nodeShapesJS)
	if len(shapes) != n {
		t.Fatalf("%d node shapes measured, want %d", len(shapes), n)
	}
	for i, s := range shapes {
		if s[0] <= 0 || math.Abs(s[0]-s[1]) > 0.5 {
			t.Fatalf("node %d drawn %.2f × %.2f px: not a circle", i, s[0], s[1])
		}
	}
}

// labelsJS waits for the overlay to settle and returns the edge labels on screen.
const labelsJS = `__connectome.overlaySettled().then(() => __connectome.labels())`

type labelBox struct {
	Text       string
	X, Y, W, H float64
}

// checkLabels fails when two edge labels on screen intersect, when a label is not the
// similarity of one of node's edges, or when none is shown although node has edges.
func checkLabels(t *testing.T, b *reporttest.Browser, node int) []labelBox {
	t.Helper()
	labels := reporttest.Eval[[]labelBox](t, b, labelsJS)
	// The boxes must hold their text: as tall as the font and as wide as the text drawn.
	widths := reporttest.Eval[[]float64](t, b, `(() => { const ctx = document.createElement('canvas').getContext('2d');
	  ctx.font = '11px sans-serif'; return __connectome.labels().map((l) => ctx.measureText(l.text).width); })()`)
	for k, l := range labels {
		if k < len(widths) && (l.H < 12 || l.W < widths[k]) {
			t.Errorf("label %q box %.1f × %.1f px is smaller than its text (%.1f px wide, 11 px font)", l.Text, l.W, l.H, widths[k])
		}
	}
	// The node's edges' similarities, written as the page writes them (JavaScript rounds
	// halves up where Go rounds them to even).
	sims := reporttest.Eval[[]string](t, b, fmt.Sprintf(`(() => { const c = __connectome, v = c.data.models[c.state.model][c.state.kind], out = [];
	  for (let e = 0; e < v.q.length; e++) if (v.q[e] === %d || v.m[e] === %d) out.push(v.s[e].toFixed(1) + '%%'); return out; })()`, node, node))
	if len(sims) > 0 && len(labels) == 0 {
		t.Errorf("node %d has %d edges and no edge label on screen", node, len(sims))
	}
	for i, a := range labels {
		if a.W <= 0 || a.H <= 0 {
			t.Errorf("label %q has an empty box", a.Text)
		}
		if !slices.Contains(sims, a.Text) {
			t.Errorf("label %q is not the similarity of an edge of node %d", a.Text, node)
		}
		for _, c := range labels[i+1:] {
			if a.X < c.X+c.W && c.X < a.X+a.W && a.Y < c.Y+c.H && c.Y < a.Y+a.H {
				t.Errorf("edge labels %q at (%.0f,%.0f %.0f×%.0f) and %q at (%.0f,%.0f %.0f×%.0f) overlap",
					a.Text, a.X, a.Y, a.W, a.H, c.Text, c.X, c.Y, c.W, c.H)
			}
		}
	}
	return labels
}

// pageURL is the page's current query.
func pageQuery(t *testing.T, b *reporttest.Browser) url.Values {
	t.Helper()
	u, err := url.Parse(reporttest.Eval[string](t, b, `location.href`))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// outList is node q's ranked matches of one view, from the page's own data.
func outList(d *pageData, model int, kind string, q int32) (ms []int32, sims []float64) {
	es := d.Models[model].Closest
	if kind == "farthest" {
		es = d.Models[model].Farthest
	}
	type hit struct {
		r int32
		m int32
		s float64
	}
	var hits []hit
	for e := range es.Q {
		if es.Q[e] == q {
			hits = append(hits, hit{es.R[e], es.M[e], es.S[e]})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int { return int(a.r - b.r) })
	for _, h := range hits {
		ms, sims = append(ms, h.m), append(sims, h.s)
	}
	return ms, sims
}

func TestMapGalleryCompareKeyboard(t *testing.T) {
	f, htmlPath, d := galleryFixture(t)
	b := reporttest.New(t)
	b.Open(t, htmlPath, "facet=cancer")
	checkRound(t, b, len(f.lesions))
	keepScreenshot(t, b.Screenshot(t, "report-map.png"))

	node := reporttest.Eval[int](t, b, isolatedNodeJS)
	clickNode(t, b, node)
	b.Do(t, chromedp.WaitVisible(chromedp.CSS("#gallery")))
	if got := reporttest.Eval[int](t, b, `__connectome.state.node`); got != node {
		t.Fatalf("clicked node %d, selected %d", node, got)
	}
	want, wantSims := outList(d, 0, "closest", int32(node))

	t.Run("gallery", func(t *testing.T) { checkGallery(t, b, d, node, want, wantSims) })

	t.Run("click moves the selection and the URL", func(t *testing.T) {
		b.Click(t, "#gallery li.card:nth-child(2) button.pick")
		next := f.lesions[want[0]].LesionID
		if got := b.Text(t, "#panel-title"); got != next {
			t.Errorf("after clicking the first match, the panel shows %q, want %q", got, next)
		}
		if q := pageQuery(t, b); q.Get("node") != next {
			t.Errorf("URL node=%q, want %q", q.Get("node"), next)
		}
		if st := reporttest.Eval[int](t, b, `__connectome.state.node`); st != int(want[0]) {
			t.Errorf("state.node %d, want %d", st, want[0])
		}
	})

	t.Run("keyboard", func(t *testing.T) { checkKeyboard(t, b, f, d) })
	t.Run("compare", func(t *testing.T) { checkCompareFlow(t, b, f, d, htmlPath) })
	t.Run("save picture", func(t *testing.T) {
		checkPictures(t, b, "graph")
	})
	b.CheckClean(t)
}

// checkGallery checks the gallery of the selected node against the page's data: its crop,
// then its matches' crops (want, in rank order, with their similarities wantSims), each with
// its similarity, clinical facts and how many of the other models list it.
func checkGallery(t *testing.T, b *reporttest.Browser, d *pageData, node int, want []int32, wantSims []float64) {
	type card struct {
		Node              int
		Src, Pct, Agree   string
		Rank, ObjPosition string
		Facts             string
	}
	cards := reporttest.Eval[[]card](t, b, `[...document.querySelectorAll('#gallery li.card')].map((c) => {
	  const img = c.querySelector('img.crop');
	  const q = (s) => (c.querySelector(s) || {}).textContent || '';
	  return { node: Number(c.dataset.node || -1), src: img ? img.src : '', pct: q('.pct'), agree: q('.agree .n'),
	    rank: q('.rank'), objPosition: img ? getComputedStyle(img).objectPosition : '', facts: q('.facts') };
	})`)
	if len(cards) != 6 || len(want) != 5 {
		t.Fatalf("%d gallery entries (%d matches), want 6 crops: the tumour and its 5 most similar", len(cards), len(want))
	}
	if cards[0].Src != d.Nodes.Preview[node] || cards[0].Rank != "selected" {
		t.Errorf("first crop is not the selected tumour's preview")
	}
	for k, c := range cards[1:] {
		j := want[k]
		if c.Node != int(j) || c.Src != d.Nodes.Preview[j] || c.Rank != fmt.Sprintf("#%d", k+1) || c.Pct != jsFixed1(wantSims[k])+" %" {
			t.Errorf("entry %d: node %d %q %q, want node %d rank %d %.1f %% with its preview", k+1, c.Node, c.Rank, c.Pct, j, k+1, wantSims[k])
		}
		// Agreement: how many of the two other models list j among node's closest.
		agree := 0
		for mi := 1; mi < 3; mi++ {
			ms, _ := outList(d, mi, "closest", int32(node))
			if slices.Contains(ms, j) {
				agree++
			}
		}
		if c.Agree != fmt.Sprintf("%d/2 models", agree) {
			t.Errorf("entry %d agreement %q, want %d/2 models", k+1, c.Agree, agree)
		}
		if c.Facts == "" || !strings.HasPrefix(c.ObjPosition, "0%") {
			t.Errorf("entry %d: facts %q, crop position %q (want the axial plane)", k+1, c.Facts, c.ObjPosition)
		}
	}
	keepScreenshot(t, b.Screenshot(t, "report-gallery.png"))
}

// checkKeyboard drives the gallery and the map with the keyboard only: arrows through the
// gallery, Enter, Esc, Tab to the map, arrows between nodes, Enter to pin.
func checkKeyboard(t *testing.T, b *reporttest.Browser, f *fixture, d *pageData) {
	cur := reporttest.Eval[int](t, b, `__connectome.state.node`)
	ms, _ := outList(d, 0, "closest", int32(cur))
	// Arrows move through the gallery; Enter selects; focus stays in the gallery.
	reporttest.Eval[bool](t, b, `(document.querySelector('#gallery button.pick[tabindex="0"]').focus(), true)`)
	b.Do(t, chromedp.KeyEvent(kb.ArrowRight))
	if got := reporttest.Eval[string](t, b, `document.activeElement.dataset.node`); got != strconv.Itoa(int(ms[1])) {
		t.Fatalf("ArrowRight: focus on node %s, want the second match %d", got, ms[1])
	}
	b.Do(t, chromedp.KeyEvent(kb.ArrowLeft), chromedp.KeyEvent(kb.ArrowLeft))
	if got := reporttest.Eval[string](t, b, `document.activeElement.dataset.node`); got != strconv.Itoa(int(ms[len(ms)-1])) {
		t.Fatalf("ArrowLeft from the first match: focus on node %s, want the last %d (wrap)", got, ms[len(ms)-1])
	}
	b.Do(t, chromedp.KeyEvent(kb.Home), chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.Enter))
	if st := reporttest.Eval[int](t, b, `__connectome.state.node`); st != int(ms[1]) {
		t.Fatalf("Enter on the second match: selected %d, want %d", st, ms[1])
	}
	if got := reporttest.Eval[string](t, b, `document.activeElement.closest('#gallery') ? 'gallery' : document.activeElement.id`); got != "gallery" {
		t.Errorf("after Enter, focus is on %q, want the new gallery", got)
	}
	// Esc unpins and hands focus to the map.
	b.Do(t, chromedp.KeyEvent(kb.Escape))
	st := reporttest.Eval[struct {
		Node   int
		Hidden bool
		Active string
	}](t, b, `({ node: __connectome.state.node, hidden: document.getElementById('panel').hidden, active: document.activeElement.id })`)
	if st.Node != -1 || !st.Hidden || st.Active != "chart" {
		t.Fatalf("after Esc: %+v, want nothing selected, the panel hidden, focus on the map", st)
	}
	// Tab from the last control reaches the map; the cursor starts on a node.
	reporttest.Eval[bool](t, b, `(document.querySelector('#search-form button').focus(), true)`)
	b.Do(t, chromedp.KeyEvent(kb.Tab))
	if got := reporttest.Eval[string](t, b, `document.activeElement.id`); got != "chart" {
		t.Fatalf("Tab from the search button reaches %q, want the map", got)
	}
	c0 := reporttest.Eval[int](t, b, `__connectome.cursor()`)
	ann := b.Text(t, "#announce")
	if c0 < 0 || !strings.Contains(ann, f.lesions[c0].LesionID) {
		t.Fatalf("cursor %d, announced %q", c0, ann)
	}
	keepScreenshot(t, b.Screenshot(t, "report-keyboard.png"))
	for _, k := range []struct {
		key    string
		dx, dy float64
	}{{kb.ArrowRight, 1, 0}, {kb.ArrowDown, 0, 1}, {kb.ArrowLeft, -1, 0}, {kb.ArrowUp, 0, -1}} {
		before := reporttest.Eval[int](t, b, `__connectome.cursor()`)
		p0 := reporttest.Eval[[]float64](t, b, fmt.Sprintf(`__connectome.nodePixel(%d)`, before))
		b.Do(t, chromedp.KeyEvent(k.key))
		after := reporttest.Eval[int](t, b, `__connectome.cursor()`)
		if after == before {
			continue // nothing in that direction
		}
		p1 := reporttest.Eval[[]float64](t, b, fmt.Sprintf(`__connectome.nodePixel(%d)`, after))
		if (p1[0]-p0[0])*k.dx+(p1[1]-p0[1])*k.dy <= 0 {
			t.Errorf("key %q moved the cursor from %v to %v", k.key, p0, p1)
		}
	}
	target := reporttest.Eval[int](t, b, `__connectome.cursor()`)
	b.Do(t, chromedp.KeyEvent(kb.Enter))
	if st := reporttest.Eval[int](t, b, `__connectome.state.node`); st != target {
		t.Errorf("Enter on the map selected %d, want the cursor's node %d", st, target)
	}
}

// checkCompareFlow opens the compare view from the gallery, checks it, reopens it from the
// URL and closes it with Esc.
func checkCompareFlow(t *testing.T, b *reporttest.Browser, f *fixture, d *pageData, htmlPath string) {
	a := reporttest.Eval[int](t, b, `__connectome.state.node`)
	ms, _ := outList(d, 0, "closest", int32(a))
	bn := int(ms[1])
	b.Click(t, "#gallery li.card:nth-child(3) button.cmp")
	b.Do(t, chromedp.WaitVisible(chromedp.CSS("#compare-dialog")))
	checkCompare(t, b, d, a, bn)
	if q := pageQuery(t, b); q.Get("node") != f.lesions[a].LesionID || q.Get("compare") != f.lesions[bn].LesionID {
		t.Errorf("URL %v does not name the pair", q)
	}
	keepScreenshot(t, b.Screenshot(t, "report-compare.png"))
	// The URL reopens the same view.
	b.Open(t, htmlPath, "facet=cancer&node="+url.QueryEscape(f.lesions[a].LesionID)+"&compare="+url.QueryEscape(f.lesions[bn].LesionID))
	checkCompare(t, b, d, a, bn)
	b.Do(t, chromedp.KeyEvent(kb.Escape))
	b.WaitFor(t, `!document.getElementById('compare-dialog').open && !new URLSearchParams(location.search).has('compare')`)
}

// checkCompare checks the open compare dialog of nodes a and b against the page's data.
func checkCompare(t *testing.T, b *reporttest.Browser, d *pageData, a, bn int) {
	t.Helper()
	res := reporttest.Eval[struct {
		Open   bool
		Title  string
		Cols   []string
		Planes []string
		Sims   map[string]string
	}](t, b, `(() => { const sims = {};
	  for (const r of document.querySelectorAll('#cmp-models tr[data-model]')) sims[r.dataset.model] = r.querySelector('td.pct').textContent;
	  return { open: document.getElementById('compare-dialog').open, title: document.getElementById('compare-title').textContent,
	    cols: [...document.querySelectorAll('.cmp-col h3')].map((h) => h.textContent),
	    planes: [...document.querySelectorAll('.planes img')].map((i) => i.className + ' ' + i.src.slice(0, 40) + ' ' + i.src.length),
	    sims }; })()`)
	ida, idb := d.Nodes.ID[a], d.Nodes.ID[bn]
	if !res.Open || res.Title != ida+" and "+idb || !slices.Equal(res.Cols, []string{ida, idb}) {
		t.Fatalf("compare dialog: open %v, title %q, columns %q", res.Open, res.Title, res.Cols)
	}
	if len(res.Planes) != 6 {
		t.Fatalf("%d plane images, want 3 per tumour", len(res.Planes))
	}
	for k, p := range res.Planes {
		i := []int{a, bn}[k/3]
		if want := fmt.Sprintf("plane plane-%d %s %d", k%3, d.Nodes.Preview[i][:40], len(d.Nodes.Preview[i])); p != want {
			t.Errorf("plane %d: %q, want %q", k, p, want)
		}
	}
	if len(res.Sims) != len(d.Models) {
		t.Fatalf("similarity for %d models, want %d", len(res.Sims), len(d.Models))
	}
	for mi, m := range d.Models {
		if got, want := res.Sims[m.Name], expectedSimilarity(d, mi, a, bn); got != want {
			t.Errorf("%s: similarity %q, want %q", m.Name, got, want)
		}
	}
}

// expectedSimilarity is what the compare view must say of a and b under model mi: the value
// when either lists the other, else the bounds their full lists give.
func expectedSimilarity(d *pageData, mi, a, b int) string {
	below, above, exact := math.Inf(1), math.Inf(-1), math.NaN()
	for _, kind := range []string{"closest", "farthest"} {
		for _, p := range [][2]int{{a, b}, {b, a}} {
			ms, sims := outList(d, mi, kind, int32(p[0]))
			if k := slices.Index(ms, int32(p[1])); k >= 0 {
				exact = sims[k]
				continue
			}
			if len(ms) < d.K {
				continue
			}
			if kind == "closest" {
				below = math.Min(below, slices.Min(sims))
			} else {
				above = math.Max(above, slices.Max(sims))
			}
		}
	}
	switch {
	case !math.IsNaN(exact):
		return jsFixed1(exact) + " %"
	case !math.IsInf(below, 1) && !math.IsInf(above, -1):
		return jsFixed1(above) + "–" + jsFixed1(below) + " %"
	case !math.IsInf(below, 1):
		return "< " + jsFixed1(below) + " %"
	}
	return "> " + jsFixed1(above) + " %"
}

// jsFixed1 is JavaScript's x.toFixed(1): like Go's, except that an exact half (x·4 an odd
// integer: only those are exactly halfway in binary) rounds up, where Go rounds to even.
func jsFixed1(x float64) string {
	if r := x * 4; r == math.Trunc(r) && math.Mod(math.Abs(r), 2) == 1 {
		x += math.Copysign(0.01, x)
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

// checkPictures saves the view as PNG and SVG through the page's buttons and checks both:
// the PNG is a valid image of the chart's size on screen; the SVG is a drawing of that size
// whose node symbols are circles and which carries the edge labels and the legend.
func checkPictures(t *testing.T, b *reporttest.Browser, mode string) {
	t.Helper()
	size := reporttest.Eval[[]float64](t, b, `[__connectome.chart.getWidth(), __connectome.chart.getHeight(), window.devicePixelRatio || 1]`)
	name, data := b.Download(t, func() { b.Click(t, "#save-png") })
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("PNG %s: %v", name, err)
	}
	w, h := int(math.Round(size[0]*size[2])), int(math.Round(size[1]*size[2]))
	if !strings.HasSuffix(name, ".png") || img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		t.Errorf("PNG %s is %v, want %d × %d (the view on screen)", name, img.Bounds(), w, h)
	}
	if colours := distinctColours(img, 64); colours < 8 {
		t.Errorf("PNG has %d colours: not a picture of the map", colours)
	}
	reporttest.SaveArtifact(t, "report-picture-"+mode+".png", data)

	labels := reporttest.Eval[[]labelBox](t, b, labelsJS)
	name, data = b.Download(t, func() { b.Click(t, "#save-svg") })
	reporttest.SaveArtifact(t, "report-picture-"+mode+".svg", data)
	svg := parseSVG(t, data)
	if !strings.HasSuffix(name, ".svg") || svg.Width != fmt.Sprint(size[0]) || svg.Height != fmt.Sprint(size[1]) {
		t.Errorf("SVG %s is %s × %s, want %v × %v", name, svg.Width, svg.Height, size[0], size[1])
	}
	circles := 0
	for _, p := range svg.paths {
		rx, ry, ok := arcRadii(p.D, p.Transform)
		if !ok {
			continue
		}
		circles++
		if math.Abs(rx-ry) > 0.01*math.Max(rx, ry) {
			t.Errorf("an SVG node symbol is an ellipse (%.2f × %.2f): d=%.60q transform=%q", rx, ry, p.D, p.Transform)
			break
		}
	}
	nodes := reporttest.Eval[int](t, b, `__connectome.nodeCount()`)
	if circles < nodes {
		t.Errorf("SVG has %d circles, want at least one per node (%d)", circles, nodes)
	}
	facet := reporttest.Eval[string](t, b, `(() => { const f = __connectome.data.facets.find((f) => f.key === __connectome.state.facet); return f && f.available ? f.label : ''; })()`)
	for _, l := range labels {
		if !slices.Contains(svg.texts, l.Text) {
			t.Errorf("SVG lacks the edge label %q", l.Text)
		}
	}
	if facet != "" && !slices.Contains(svg.texts, facet) {
		t.Errorf("SVG lacks the legend title %q (texts %q)", facet, svg.texts)
	}
}

type svgDoc struct {
	Width  string `xml:"width,attr"`
	Height string `xml:"height,attr"`
	paths  []svgPath
	texts  []string
}

type svgPath struct{ D, Transform string }

// parseSVG reads the root size, every path and every text of an SVG document.
func parseSVG(t *testing.T, data []byte) *svgDoc {
	t.Helper()
	var doc svgDoc
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("SVG does not parse: %v", err)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	var inText bool
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch el := tok.(type) {
		case xml.StartElement:
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch el.Name.Local {
			case "path":
				doc.paths = append(doc.paths, svgPath{attr("d"), attr("transform")})
			case "text":
				inText = true
				text.Reset()
			}
		case xml.CharData:
			if inText {
				text.Write(el)
			}
		case xml.EndElement:
			if el.Name.Local == "text" {
				inText = false
				doc.texts = append(doc.texts, strings.TrimSpace(text.String()))
			}
		}
	}
	return &doc
}

var (
	arcRE    = regexp.MustCompile(`A\s*([-0-9.e]+)[ ,]+([-0-9.e]+)`)
	matrixRE = regexp.MustCompile(`matrix\(\s*([-0-9.e]+)[ ,]+([-0-9.e]+)[ ,]+([-0-9.e]+)[ ,]+([-0-9.e]+)`)
)

// arcRadii is the drawn radii of a path made of arcs (ECharts draws a circle symbol as arcs),
// after its transform; ok is false for a path without arcs.
func arcRadii(d, transform string) (rx, ry float64, ok bool) {
	m := arcRE.FindStringSubmatch(d)
	if m == nil {
		return 0, 0, false
	}
	rx, _ = strconv.ParseFloat(m[1], 64)
	ry, _ = strconv.ParseFloat(m[2], 64)
	if t := matrixRE.FindStringSubmatch(transform); t != nil {
		a, _ := strconv.ParseFloat(t[1], 64)
		bb, _ := strconv.ParseFloat(t[2], 64)
		c, _ := strconv.ParseFloat(t[3], 64)
		dd, _ := strconv.ParseFloat(t[4], 64)
		rx *= math.Hypot(a, bb)
		ry *= math.Hypot(c, dd)
	}
	return rx, ry, true
}

func distinctColours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r >> 12, g >> 12, bl >> 12, a >> 12}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// TestMapLargeMode: the large mode (batched edges, scatter nodes) of the same page: round
// nodes, a tooltip on every edge (not only the pinned node's), labels without overlap, and
// the pictures.
func TestMapLargeMode(t *testing.T) {
	f, htmlPath, _ := galleryFixture(t)
	b := reporttest.New(t)
	// The farthest lists make long edges that cross the map: the hard case for hovering.
	b.Open(t, htmlPath, "render=large&kind=farthest&facet=stage&node="+url.QueryEscape(f.lesions[7].LesionID))
	checkRound(t, b, len(f.lesions))
	checkLabels(t, b, 7)

	// Edges whose middle is clear of every other edge and node can be hovered there (the
	// nearest edge within 4 px wins).
	type probe struct {
		E    int
		X, Y float64
		Q, M string
		S    float64
	}
	probes := reporttest.Eval[[]probe](t, b, `(() => {
	  const c = __connectome, v = c.data.models[c.state.model][c.state.kind], n = c.data.nodes.id.length;
	  const r = document.getElementById('chart').getBoundingClientRect(), right = r.width - document.getElementById('panel').offsetWidth;
	  const px = []; for (let i = 0; i < n; i++) px.push(c.nodePixel(i));
	  const seg = (x, y, a, b) => { const dx = b[0] - a[0], dy = b[1] - a[1], l = dx * dx + dy * dy;
	    const t = l ? Math.max(0, Math.min(1, ((x - a[0]) * dx + (y - a[1]) * dy) / l)) : 0;
	    return Math.hypot(a[0] + t * dx - x, a[1] + t * dy - y); };
	  const out = [];
	  for (let e = 0; e < v.q.length && out.length < 40; e += 3) {
	    const a = px[v.q[e]], b = px[v.m[e]], x = (a[0] + b[0]) / 2, y = (a[1] + b[1]) / 2;
	    if (x < 10 || x > right - 10 || y < 10 || y > r.height - 10) continue;
	    let clear = true;
	    for (let o = 0; o < v.q.length && clear; o++) if (o !== e && !(v.q[o] === v.m[e] && v.m[o] === v.q[e]) && seg(x, y, px[v.q[o]], px[v.m[o]]) < 3) clear = false;
	    for (let i = 0; i < n && clear; i++) if (Math.hypot(px[i][0] - x, px[i][1] - y) < c.nodeRadius(i) + 3) clear = false;
	    const pinned = v.q[e] === c.state.node || v.m[e] === c.state.node;
	    if (clear && !pinned) out.push({ e, x: x + r.left, y: y + r.top, q: c.data.nodes.id[v.q[e]], m: c.data.nodes.id[v.m[e]], s: v.s[e] });
	  }
	  return out;
	})()`)
	// The pinned node's edges are drawn apart, with the chart's own tooltips; these are
	// the others, in the batched path.
	if len(probes) < 20 {
		t.Fatalf("only %d edges clear enough to hover: too few to test", len(probes))
	}
	for _, p := range probes {
		b.Do(t, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, p.X, p.Y))
		tip := reporttest.Eval[string](t, b, `__connectome.overlaySettled().then(() => { const e = document.getElementById('edge-tip'); return e.hidden ? '' : e.textContent; })`)
		want := fmt.Sprintf("%s → %s", p.Q, p.M)
		wantRev := fmt.Sprintf("%s → %s", p.M, p.Q)
		if !strings.Contains(tip, want) && !strings.Contains(tip, wantRev) || !strings.Contains(tip, fmt.Sprintf("%.2f %% similar", p.S)) {
			t.Errorf("hover over edge %d (%s, %.2f %%) at (%.0f, %.0f): tooltip %q", p.E, want, p.S, p.X, p.Y, tip)
		}
	}
	last := probes[len(probes)-1]
	b.Do(t, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, last.X, last.Y))
	reporttest.Eval[bool](t, b, `__connectome.overlaySettled().then(() => true)`)
	keepScreenshot(t, b.Screenshot(t, "report-large-edge-tooltip.png"))
	t.Logf("%d edges hovered", len(probes))
	checkPictures(t, b, "large")
	b.CheckClean(t)
}

// TestPageAccessibility runs axe-core on every view of the page: the map, a pinned tumour
// with its gallery, the compare view, the dialogs, and the large mode. No serious or
// critical violation is allowed; the others are logged.
func TestPageAccessibility(t *testing.T) {
	f, htmlPath, _ := galleryFixture(t)
	b := reporttest.New(t)
	check := func(view string) {
		t.Helper()
		vs := b.Axe(t)
		for _, v := range vs {
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Errorf("%s: %s", view, v)
			} else {
				t.Logf("%s: %s", view, v)
			}
		}
	}
	closeDialogs := func() {
		reporttest.Eval[bool](t, b, `([...document.querySelectorAll('dialog[open]')].forEach((d) => d.close()), true)`)
	}
	// One page load, the views reached with the page's own controls.
	b.Open(t, htmlPath, "facet=cancer&node="+url.QueryEscape(f.lesions[3].LesionID))
	check("pinned tumour and gallery")
	b.Click(t, "#gallery li.card:nth-child(2) button.cmp")
	check("compare view")
	closeDialogs()
	for _, d := range []struct{ button, dialog string }{{"#about-btn", "about dialog"}, {"#agreement-btn", "agreement dialog"}, {"#model-info-btn", "model dialog"}} {
		b.Click(t, d.button)
		check(d.dialog)
		closeDialogs()
	}
	b.Click(t, "#panel-close")
	check("map")
	b.Open(t, htmlPath, "render=large&facet=stage&node="+url.QueryEscape(f.lesions[3].LesionID))
	check("large mode")
	b.CheckClean(t)
}
