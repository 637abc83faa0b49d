package report

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browser is a headless Debian chromium driven over CDP. Every request that is not the
// file: page itself (or a data: URI inside it) is failed and recorded, so a page that tries
// to reach the network fails its test.
type browser struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	network  []string // non-file requests attempted
	errors   []string // console errors, exceptions, error log entries (CSP violations)
	warnings []string
}

// chromiumPath finds the browser: $CHROMIUM, else chromium on PATH. Browser tests fail when
// CI is set and it is missing, and skip otherwise.
func chromiumPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		var err error
		if p, err = exec.LookPath("chromium"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium not found: apt-get install -y --no-install-recommends chromium")
			}
			t.Skip("chromium not found (apt-get install -y --no-install-recommends chromium)")
		}
	}
	return p
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	// The first call starts the browser; it must not carry a timeout (that would end it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	record := func(list *[]string, s string) {
		b.mu.Lock()
		*list = append(*list, s)
		b.mu.Unlock()
	}
	err := chromedp.Listen(ctx, func(ev any) {
		// Runs in the tab's read loop: no commands here, hand them to a goroutine.
		switch ev := ev.(type) {
		case *fetch.EventRequestPaused:
			u, id := ev.Request.URL, ev.RequestID
			if strings.HasPrefix(u, "file://") || strings.HasPrefix(u, "data:") {
				go chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id})
				return
			}
			record(&b.network, u)
			go chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: id, ErrorReason: network.ErrorReasonBlockedByClient})
		case *network.EventRequestWillBeSent:
			if u := ev.Request.URL; !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
				record(&b.network, u)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleException:
				record(&b.errors, m.String()+" @ "+m.URL)
			case chromedp.ConsoleWarning:
				record(&b.warnings, m.String())
			}
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatalf("enable request interception: %v", err)
	}
	// Block at the network layer as well: nothing but the file itself may load.
	var block []*network.BlockPattern
	for _, p := range []string{"http://*:*/*", "https://*:*/*", "ws://*:*/*", "wss://*:*/*"} {
		block = append(block, &network.BlockPattern{URLPattern: p, Block: true})
	}
	if _, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: block}); err != nil {
		t.Fatalf("block URLs: %v", err)
	}
	return b
}

// open loads the page with the query (may be "") and waits until the first render is done.
func (b *browser) open(t testing.TB, path, query string) {
	t.Helper()
	u := fileURL(path)
	if query != "" {
		u += "?" + query
	}
	if err := chromedp.Do(b.ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	b.waitReady(t)
}

func (b *browser) waitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 120*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.__connectome && window.__connectome.ready`, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("page did not render: %v (errors: %v)", err, b.consoleErrors())
	}
}

func fileURL(path string) string {
	abs, _ := filepath.Abs(path)
	return (&url.URL{Scheme: "file", Path: abs}).String()
}

// eval runs JavaScript in the page (awaiting a promise) and decodes its value.
func eval[T any](t testing.TB, b *browser, js string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %.100q: %v", js, err)
	}
	return v
}

// do runs actions and fails the test on error.
func (b *browser) do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// click clicks the element that a CSS selector finds, with the mouse.
func (b *browser) click(t testing.TB, css string) {
	t.Helper()
	b.do(t, chromedp.Click(chromedp.CSS(css)))
}

// choose selects a value in a <select> as a user would, which fires "change".
func (b *browser) choose(t testing.TB, css, value string) {
	t.Helper()
	eval[chromedp.Void](t, b, fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); })()`, css, value))
}

func (b *browser) text(t testing.TB, css string) string {
	t.Helper()
	return eval[string](t, b, fmt.Sprintf(`document.querySelector(%q).textContent`, css))
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// checkClean fails the test on console errors or network attempts.
func (b *browser) checkClean(t testing.TB) {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // let the last console events arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) > 0 {
		t.Errorf("console errors: %q", b.errors)
	}
	if len(b.network) > 0 {
		t.Errorf("network requests attempted: %q", b.network)
	}
	if len(b.warnings) > 0 {
		t.Logf("console warnings: %q", b.warnings)
	}
}

// screenshot saves a PNG to $TEST_ARTIFACTS (or the test's temp dir) and returns its path.
func (b *browser) screenshot(t testing.TB, name string) string {
	t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}

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
func (b *browser) nodeXY(t testing.TB, i int) []float64 {
	t.Helper()
	return eval[[]float64](t, b, fmt.Sprintf(`(() => { const p = __connectome.nodePixel(%d); const r = document.getElementById('chart').getBoundingClientRect(); return [p[0] + r.left, p[1] + r.top]; })()`, i))
}

// clickNode clicks node i on the canvas with the mouse.
func (b *browser) clickNode(t testing.TB, i int) {
	t.Helper()
	xy := b.nodeXY(t, i)
	b.do(t, chromedp.MouseClickXY(xy[0], xy[1]))
}

// hoverNode moves the mouse over node i.
func (b *browser) hoverNode(t testing.TB, i int) {
	t.Helper()
	xy := b.nodeXY(t, i)
	b.do(t, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0], xy[1]))
}

// isolatedNodeJS finds a node, inside the middle of the chart, whose drawn position is
// farthest from every other node, so that a click there cannot hit a neighbour.
const isolatedNodeJS = `(() => {
  const c = __connectome, n = c.data.nodes.id.length, r = document.getElementById('chart').getBoundingClientRect();
  const px = []; for (let i = 0; i < n; i++) px.push(c.nodePixel(i));
  let best = -1, bestD = -1;
  for (let i = 0; i < n; i++) {
    const [x, y] = px[i];
    if (x < 0.3 * r.width || x > 0.6 * r.width || y < 0.2 * r.height || y > 0.8 * r.height) continue;
    let d = Infinity;
    for (let j = 0; j < n; j++) if (j !== i) d = Math.min(d, Math.hypot(px[j][0] - x, px[j][1] - y));
    if (d > bestD) { bestD = d; best = i; }
  }
  return best;
})()`

// TestHarnessCatchesNetworkAndErrors proves the checks the page tests rely on: a page that
// reaches for the network or logs an error is caught.
func TestHarnessCatchesNetworkAndErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "leaky.html")
	html := `<!DOCTYPE html><html><body><img src="http://192.0.2.1/x.png"><script>fetch("https://192.0.2.1/y").catch(() => {}); console.error("boom")</script></body></html>`
	if err := os.WriteFile(p, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.do(t, chromedp.Navigate(fileURL(p)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		nNet, nErr := len(b.network), len(b.errors)
		b.mu.Unlock()
		if nNet >= 2 && nErr >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness saw %d network requests and %d errors, want ≥ 2 and ≥ 1", nNet, nErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
