// Package reporttest drives a report page in headless Debian chromium for tests: every
// request that is not the file: page itself (or a data: URI inside it) is failed and
// recorded, console errors are collected, and screenshots go to $TEST_ARTIFACTS. It imports
// testing, so only _test.go files may import it.
package reporttest

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
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Browser is one headless chromium tab.
type Browser struct {
	// Ctx is the tab's chromedp context, for actions the helpers below do not cover.
	Ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	network  []string // non-file requests attempted
	errors   []string // console errors, exceptions, error log entries (CSP violations)
	warnings []string
}

const installHint = "apt-get install -y --no-install-recommends chromium"

// FindChromium finds the browser: $CHROMIUM, else chromium on PATH. When it is missing the
// test fails if CI is set, and ok is false otherwise.
func FindChromium(t testing.TB) (path string, ok bool) {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, true
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found: " + installHint)
		}
		return "", false
	}
	return p, true
}

// Chromium is FindChromium for tests that need the browser: a missing one fails the test
// when CI is set and skips it otherwise.
func Chromium(t testing.TB) string {
	t.Helper()
	p, ok := FindChromium(t)
	if !ok {
		t.Skip("chromium not found (" + installHint + ")")
	}
	return p
}

// New starts chromium (see Chromium for when it is missing) with request blocking and
// console collection on; the test's cleanup ends it.
func New(t testing.TB) *Browser {
	t.Helper()
	return Launch(t, Chromium(t))
}

// Launch is New with the browser's executable given.
func Launch(t testing.TB, execPath string) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
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
	b := &Browser{Ctx: ctx, cancel: func() { cancel(); acancel() }}
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
			if isLocal(u) {
				go chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id})
				return
			}
			record(&b.network, u)
			go chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: id, ErrorReason: network.ErrorReasonBlockedByClient})
		case *network.EventRequestWillBeSent:
			if u := ev.Request.URL; !isLocal(u) {
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

func isLocal(u string) bool {
	return strings.HasPrefix(u, "file://") || strings.HasPrefix(u, "data:")
}

// Open loads the page with the query (may be "") and waits until the first render is done.
func (b *Browser) Open(t testing.TB, path, query string) {
	t.Helper()
	u := FileURL(path)
	if query != "" {
		u += "?" + query
	}
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	b.WaitReady(t)
}

// WaitReady waits (up to two minutes) until the page sets window.__connectome.ready.
func (b *Browser) WaitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 120*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.__connectome && window.__connectome.ready`, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("page did not render: %v (errors: %v)", err, b.ConsoleErrors())
	}
}

// WaitFor waits (up to ten seconds) until the JavaScript condition is true, and fails the
// test if it does not become true.
func (b *Browser) WaitFor(t testing.TB, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s: %v", cond, err)
	}
}

// FileURL is the file: URL of path (made absolute).
func FileURL(path string) string {
	abs, _ := filepath.Abs(path)
	return (&url.URL{Scheme: "file", Path: abs}).String()
}

// Eval runs JavaScript in the page (awaiting a promise) and decodes its value.
func Eval[T any](t testing.TB, b *Browser, js string) T {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %.100q: %v", js, err)
	}
	return v
}

// Do runs actions and fails the test on error.
func (b *Browser) Do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.Ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// Click clicks the element that a CSS selector finds, with the mouse.
func (b *Browser) Click(t testing.TB, css string) {
	t.Helper()
	b.Do(t, chromedp.Click(chromedp.CSS(css)))
}

// Choose selects a value in a <select> as a user would, which fires "change".
func (b *Browser) Choose(t testing.TB, css, value string) {
	t.Helper()
	Eval[chromedp.Void](t, b, fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); })()`, css, value))
}

// Text is the textContent of the element that a CSS selector finds.
func (b *Browser) Text(t testing.TB, css string) string {
	t.Helper()
	return Eval[string](t, b, fmt.Sprintf(`document.querySelector(%q).textContent`, css))
}

// ConsoleErrors are the console errors and exceptions seen so far.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// NetworkAttempts are the non-file requests the page tried so far.
func (b *Browser) NetworkAttempts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.network...)
}

// CheckClean fails the test on console errors or network attempts.
func (b *Browser) CheckClean(t testing.TB) {
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

// Screenshot saves a PNG to $TEST_ARTIFACTS (or the test's temp dir) and returns its path.
func (b *Browser) Screenshot(t testing.TB, name string) string {
	t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	return SaveArtifact(t, name, png)
}

// SaveArtifact writes a test output file (screenshot, exported picture) to $TEST_ARTIFACTS
// (or the test's temp dir) and returns its path.
func SaveArtifact(t testing.TB, name string, data []byte) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s", p)
	return p
}
