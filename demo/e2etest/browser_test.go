package e2etest

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// checkInBrowser opens the demo's report in headless Debian chromium with every non-file
// request failed, waits for the first render, and checks the drawn map against the tables and
// that the page logged no errors and tried no network. It is a small copy of the report
// stage's browser harness (stages/report/browser_test.go), which a test in another package
// cannot import.
func checkInBrowser(t *testing.T, report string, lesions, edges int) {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium not found: apt-get install -y --no-install-recommends chromium")
			}
			t.Log("chromium not found: the report is not checked in a browser")
			return
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this context
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var problems []string
	note := func(s string) { mu.Lock(); problems = append(problems, s); mu.Unlock() }
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*fetch.EventRequestPaused); ok {
			u, id := ev.Request.URL, ev.RequestID
			if strings.HasPrefix(u, "file://") || strings.HasPrefix(u, "data:") {
				go chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id})
				return
			}
			note("network request: " + u)
			go chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: id, ErrorReason: network.ErrorReasonBlockedByClient})
		}
	}); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				note("console: " + m.String())
			}
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatalf("enable request interception: %v", err)
	}
	u := (&url.URL{Scheme: "file", Path: report}).String()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 120*time.Second)
	defer wcancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](`window.__connectome && window.__connectome.ready`,
		chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("the report did not render: %v (%v)", err, problems)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Evaluate[int](`__connectome.nodeCount()`))
	if err != nil {
		t.Fatal(err)
	}
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[int](`__connectome.edges().length`))
	if err != nil {
		t.Fatal(err)
	}
	if nodes != lesions {
		t.Errorf("the report draws %d nodes, lesions.arrow has %d", nodes, lesions)
	}
	if drawn == 0 || drawn > edges {
		t.Errorf("the report draws %d edges, edges.arrow has %d", drawn, edges)
	}
	time.Sleep(100 * time.Millisecond) // let the last console events arrive
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("report in the browser: %q", problems)
	}
	t.Logf("browser: %d nodes, %d edges drawn", nodes, drawn)
}
