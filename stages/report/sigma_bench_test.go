package report

import (
	"context"
	"encoding/json"
	"html/template"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectome/stages/report/reporttest"
)

// BenchmarkSigmaVsECharts draws the same precomputed 5 000-node map with sigma.js +
// graphology (WebGL; SwiftShader in headless chromium) and with this page's ECharts large
// mode, in the same run, and reports load and model-switch times and their ratio.
// scripts/bench/report-sigma.sh fetches the two libraries and runs it; without
// REPORT_SIGMA_DIR it is skipped.
func BenchmarkSigmaVsECharts(b *testing.B) {
	dir := os.Getenv("REPORT_SIGMA_DIR")
	if dir == "" {
		b.Skip("REPORT_SIGMA_DIR not set (scripts/bench/report-sigma.sh sets it)")
	}
	read := func(name string) template.JS {
		s, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		return template.JS(s)
	}
	const n = 5000
	f := synthetic(b, n, 9, 5, 42)
	d, err := buildPage(context.Background(), testSettings(b), &inputs{edges: f.edges, lesions: f.lesions, clinical: clinicalByPatient(f.clinical)}, 2)
	if err != nil {
		b.Fatal(err)
	}
	runDir := b.TempDir()
	f.write(b, runDir)
	echartsPage := runStage(b, runDir, testSettings(b))

	// The sigma page gets the same layout, edges and colours (by stage) as JSON.
	type view struct {
		Layout []int32 `json:"layout"`
		Q      []int32 `json:"q"`
		M      []int32 `json:"m"`
	}
	var data struct {
		N      int      `json:"n"`
		Colors []string `json:"colors"`
		Views  []view   `json:"views"`
	}
	data.N = n
	for _, fc := range d.Facets {
		if fc.Key == "stage" {
			for _, v := range fc.Values {
				data.Colors = append(data.Colors, fc.Categories[v].Color)
			}
		}
	}
	for _, m := range d.Models {
		data.Views = append(data.Views, view{m.Closest.Layout, m.Closest.Q, m.Closest.M})
	}
	js, _ := json.Marshal(data)
	page := template.Must(template.New("s").Parse(`<!DOCTYPE html><html><head><meta charset="utf-8">
<style>html,body{margin:0;height:100%;background:#0f172a}#c{position:absolute;inset:0}</style></head>
<body><div id="c"></div><script id="d" type="application/json">{{.Data}}</script>
<script>{{.Graphology}}</script><script>{{.Sigma}}</script>
<script>
const D = JSON.parse(document.getElementById('d').textContent);
const SigmaClass = window.Sigma.Sigma || window.Sigma.default || window.Sigma;
const g = new graphology.Graph({ type: 'directed', multi: false });
function load(vi) {
  const v = D.views[vi], indeg = new Int32Array(D.n);
  for (const m of v.m) indeg[m]++;
  g.clear();
  for (let i = 0; i < D.n; i++) g.addNode(i, { x: v.layout[2*i], y: v.layout[2*i+1], size: 2 + 6 * Math.sqrt(indeg[i] / 10), color: D.colors[i] });
  for (let e = 0; e < v.q.length; e++) g.mergeEdge(v.q[e], v.m[e], { color: 'rgba(86,180,233,0.25)', size: 0.5 });
}
const t0 = performance.now();
load(0);
const r = new SigmaClass(g, document.getElementById('c'), { renderLabels: false });
window.__connectome = { ready: true, renderer: r, timings: { script: performance.now() - t0 } };
window.__switch = (vi) => new Promise((resolve) => {
  const t = performance.now();
  r.once('afterRender', () => resolve(performance.now() - t));
  load(vi);
  r.refresh();
});
</script></body></html>`))
	sigmaPage := filepath.Join(b.TempDir(), "sigma.html")
	fh, err := os.Create(sigmaPage)
	if err != nil {
		b.Fatal(err)
	}
	if err := page.Execute(fh, map[string]any{"Data": template.JS(js), "Graphology": read("graphology.umd.min.js"), "Sigma": read("sigma.min.js")}); err != nil {
		b.Fatal(err)
	}
	fh.Close()

	for b.Loop() {
		sb := reporttest.New(b)
		start := time.Now()
		sb.Open(b, sigmaPage, "")
		firstFrame(b, sb)
		sLoad := time.Since(start)
		sSwitch := time.Duration(reporttest.Eval[float64](b, sb, `__switch(4)`) * float64(time.Millisecond))
		sb.CheckClean(b)
		keepScreenshot(b, sb.Screenshot(b, "report-5000-sigma.png"))

		e := measurePage(b, echartsPage, n, "render=large", false)
		b.Logf("5000 nodes, sigma.js 4.0.4 + graphology 0.26.0: load+first render %v, model switch %v", sLoad.Round(time.Millisecond), sSwitch.Round(time.Millisecond))
		b.Logf("5000 nodes, ECharts 6.1.0 large mode:       load+first render %v, model switch %v", e.Load.Round(time.Millisecond), e.ModelSwitch.Round(time.Millisecond))
		b.Logf("ratio sigma/echarts: load %.2f, model switch %.2f", float64(sLoad)/float64(e.Load), float64(sSwitch)/float64(max(e.ModelSwitch, time.Millisecond)))
		b.ReportMetric(float64(sLoad.Milliseconds()), "sigma-load-ms")
		b.ReportMetric(float64(sSwitch.Milliseconds()), "sigma-switch-ms")
		b.ReportMetric(float64(e.Load.Milliseconds()), "echarts-load-ms")
		b.ReportMetric(float64(e.ModelSwitch.Milliseconds()), "echarts-switch-ms")
	}
}

// firstFrame waits for sigma's first frame (two animation frames after construction).
func firstFrame(t testing.TB, b *reporttest.Browser) {
	reporttest.Eval[float64](t, b, `new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(0))))`)
}
