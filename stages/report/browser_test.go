package report

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"connectome/stages/report/reporttest"
)

// The browser harness (headless Debian chromium, every non-file request failed and recorded,
// console errors collected, screenshots to $TEST_ARTIFACTS) is reporttest.Browser; what
// follows is specific to this page.

// keepScreenshot also copies a screenshot into testdata/artifacts/ (git-ignored) so that a
// person can look at the last rendering.
func keepScreenshot(t testing.TB, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join("testdata", "artifacts", filepath.Base(src))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		if err := os.WriteFile(dst, b, 0o644); err == nil {
			abs, _ := filepath.Abs(dst)
			t.Logf("screenshot kept (not committed): %s", abs)
		}
	}
}

// nodeXY is node i's drawn position in page coordinates.
func nodeXY(t testing.TB, b *reporttest.Browser, i int) []float64 {
	t.Helper()
	return reporttest.Eval[[]float64](t, b, fmt.Sprintf(`(() => { const p = __connectome.nodePixel(%d); const r = document.getElementById('chart').getBoundingClientRect(); return [p[0] + r.left, p[1] + r.top]; })()`, i))
}

// clickNode clicks node i on the canvas with the mouse.
func clickNode(t testing.TB, b *reporttest.Browser, i int) {
	t.Helper()
	xy := nodeXY(t, b, i)
	b.Do(t, chromedp.MouseClickXY(xy[0], xy[1]))
}

// hoverNode moves the mouse over node i.
func hoverNode(t testing.TB, b *reporttest.Browser, i int) {
	t.Helper()
	xy := nodeXY(t, b, i)
	b.Do(t, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0], xy[1]))
}

// isolatedNodeJS finds a node, inside the middle of the chart, that no node drawn after it
// covers and whose drawn position is farthest from every other node, so that a click there
// cannot hit a neighbour.
const isolatedNodeJS = `(() => {
  const c = __connectome, n = c.data.nodes.id.length, r = document.getElementById('chart').getBoundingClientRect();
  const px = [], rad = []; for (let i = 0; i < n; i++) { px.push(c.nodePixel(i)); rad.push(c.nodeRadius(i)); }
  let best = -1, bestD = -Infinity;
  for (let i = 0; i < n; i++) {
    const [x, y] = px[i];
    if (x < 0.3 * r.width || x > 0.6 * r.width || y < 0.2 * r.height || y > 0.8 * r.height) continue;
    let d = Infinity, covered = false;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const dj = Math.hypot(px[j][0] - x, px[j][1] - y);
      if (j > i && dj <= rad[j] + 1) covered = true;
      d = Math.min(d, dj - rad[j]);
    }
    if (!covered && d > bestD) { bestD = d; best = i; }
  }
  return best;
})()`
