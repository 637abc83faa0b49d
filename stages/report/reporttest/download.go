package reporttest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// Download runs trigger, which makes the page download a file (a click on a save button),
// and returns the name the page suggested and the file's bytes. Downloads go to a temporary
// folder; the test fails when none completes within a minute.
func (b *Browser) Download(t testing.TB, trigger func()) (name string, data []byte) {
	t.Helper()
	dir := t.TempDir()
	yes := true
	if _, err := chromedp.CallBrowser(b.Ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &yes,
	}); err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	var mu sync.Mutex
	names := map[string]string{}
	done := make(chan string, 1)
	ctx, cancel := context.WithCancel(b.Ctx)
	defer cancel()
	if err := chromedp.ListenBrowser(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *browser.EventDownloadWillBegin:
			mu.Lock()
			names[ev.GUID] = ev.SuggestedFilename
			mu.Unlock()
		case *browser.EventDownloadProgress:
			if ev.State == browser.DownloadProgressStateCompleted || ev.State == browser.DownloadProgressStateCanceled {
				select {
				case done <- ev.GUID + "\x00" + string(ev.State):
				default:
				}
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	trigger()
	select {
	case got := <-done:
		guid, state, _ := strings.Cut(got, "\x00")
		if state != string(browser.DownloadProgressStateCompleted) {
			t.Fatalf("download %s: %s", guid, state)
		}
		data, err := os.ReadFile(filepath.Join(dir, guid))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return names[guid], data
	case <-time.After(time.Minute):
		t.Fatalf("no download completed within a minute (errors: %v)", b.ConsoleErrors())
	}
	return "", nil
}
