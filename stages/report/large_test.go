package report

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"connectome/stages/report/reporttest"
)

// interactionJS switches the view with the page's own controls and resolves, after the
// chart has painted the new view, with the elapsed milliseconds.
const interactionJS = `new Promise((resolve) => {
  const c = __connectome.chart, t0 = performance.now();
  const done = () => { c.off('finished', done); resolve(performance.now() - t0); };
  c.on('finished', done);
  %s
})`

// timings are the browser-side figures of one page.
type timings struct {
	Build, Load, Script                          time.Duration
	ModelSwitch, KindSwitch, FacetSwitch, Select time.Duration
	Bytes                                        int64
}

// buildLarge builds an n-node, 9-model map and returns its path and the build time.
func buildLarge(t testing.TB, n int) (string, time.Duration) {
	f := synthetic(t, n, 9, 5, 42)
	runDir := t.TempDir()
	f.write(t, runDir)
	s := testSettings(t)
	start := time.Now()
	htmlPath := runStage(t, runDir, s)
	return htmlPath, time.Since(start)
}

// measurePage opens a built map in a fresh chromium and times loading and interactions.
// query may force a render mode ("render=graph" or "render=large").
func measurePage(t testing.TB, htmlPath string, n int, query string) timings {
	var tm timings
	st, err := os.Stat(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	tm.Bytes = st.Size()
	b := reporttest.New(t)
	start := time.Now()
	b.Open(t, htmlPath, query)
	tm.Load = time.Since(start) // navigation, parse, data decode, first paint
	tm.Script = time.Duration(reporttest.Eval[float64](t, b, `__connectome.timings.script`) * float64(time.Millisecond))
	ms := func(js string) time.Duration {
		return time.Duration(reporttest.Eval[float64](t, b, fmt.Sprintf(interactionJS, js)) * float64(time.Millisecond))
	}
	tm.ModelSwitch = ms(`const s = document.getElementById('model'); s.value = '4'; s.dispatchEvent(new Event('change'));`)
	tm.KindSwitch = ms(`document.getElementById('kind-farthest').click();`)
	tm.FacetSwitch = ms(`const f = document.getElementById('facet'); f.value = 'stage'; f.dispatchEvent(new Event('change'));`)
	tm.Select = ms(`document.querySelector('#search').value = 'L00010'; document.querySelector('#search-form').requestSubmit();`)
	if got := reporttest.Eval[int](t, b, `__connectome.nodeCount()`); got != n {
		t.Errorf("drawn nodes %d, want %d", got, n)
	}
	if got := b.Text(t, "#panel-title"); got != "L00010" {
		t.Errorf("selected %q, want L00010", got)
	}
	mode := strings.TrimPrefix(query, "render=")
	if mode == "" {
		mode = "auto"
	}
	keepScreenshot(t, b.Screenshot(t, fmt.Sprintf("report-%d-%s.png", n, mode)))
	b.CheckClean(t)
	return tm
}

func (tm timings) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%.1f MB, load+first render %v (script %v), model switch %v, kind switch %v, facet %v, select %v",
		float64(tm.Bytes)/1e6, r(tm.Load), r(tm.Script), r(tm.ModelSwitch), r(tm.KindSwitch), r(tm.FacetSwitch), r(tm.Select))
}

// TestLargeMap checks that a 5 000-node, 9-model map builds and stays interactive in
// headless chromium (software rendering). The bounds are loose, for a busy 2-core machine;
// docs/bench/report.md has the measured figures.
func TestLargeMap(t *testing.T) {
	if testing.Short() {
		t.Skip("5 000-node map: skipped with -short")
	}
	htmlPath, build := buildLarge(t, 5000)
	tm := measurePage(t, htmlPath, 5000, "")
	t.Logf("5000 nodes × 9 models: build %v, %v", build.Round(time.Millisecond), tm)
	for name, d := range map[string]time.Duration{"model switch": tm.ModelSwitch, "kind switch": tm.KindSwitch, "facet switch": tm.FacetSwitch, "select": tm.Select} {
		if d > 3*time.Second {
			t.Errorf("%s took %v, want < 3 s", name, d)
		}
	}
	if tm.Load > 20*time.Second {
		t.Errorf("load took %v, want < 20 s", tm.Load)
	}
}

// BenchmarkRenderModes draws the same 5 000-node map with ECharts' graph series (as the
// published page does) and with the large mode the page picks at this size, in the same
// run, and reports the ratios (graph ÷ large). scripts/bench/report-render.sh runs it.
func BenchmarkRenderModes(b *testing.B) {
	n := 5000
	if s := os.Getenv("REPORT_BENCH_NODES"); s != "" {
		fmt.Sscan(s, &n)
	}
	htmlPath, build := buildLarge(b, n)
	b.ReportMetric(float64(build.Milliseconds()), "build-ms")
	for b.Loop() {
		g := measurePage(b, htmlPath, n, "render=graph")
		l := measurePage(b, htmlPath, n, "render=large")
		b.Logf("%d nodes, graph series: %v", n, g)
		b.Logf("%d nodes, large mode:   %v", n, l)
		ratio := func(x, y time.Duration) float64 { return float64(x) / float64(max(y, time.Millisecond)) }
		b.Logf("ratio graph/large: load %.2f, model switch %.2f, kind switch %.2f, facet %.2f, select %.2f",
			ratio(g.Load, l.Load), ratio(g.ModelSwitch, l.ModelSwitch), ratio(g.KindSwitch, l.KindSwitch),
			ratio(g.FacetSwitch, l.FacetSwitch), ratio(g.Select, l.Select))
		b.ReportMetric(float64(l.Load.Milliseconds()), "large-load-ms")
		b.ReportMetric(float64(l.ModelSwitch.Milliseconds()), "large-switch-ms")
		b.ReportMetric(float64(g.Load.Milliseconds()), "graph-load-ms")
		b.ReportMetric(float64(g.ModelSwitch.Milliseconds()), "graph-switch-ms")
	}
}
