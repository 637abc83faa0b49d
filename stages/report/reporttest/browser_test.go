package reporttest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestHarnessCatchesNetworkAndErrors proves the checks the page tests rely on: a page that
// reaches for the network or logs an error is caught.
func TestHarnessCatchesNetworkAndErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "leaky.html")
	html := `<!DOCTYPE html><html><body><img src="http://192.0.2.1/x.png"><script>fetch("https://192.0.2.1/y").catch(() => {}); console.error("boom")</script></body></html>`
	if err := os.WriteFile(p, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	b := New(t)
	b.Do(t, chromedp.Navigate(FileURL(p)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		nNet, nErr := len(b.NetworkAttempts()), len(b.ConsoleErrors())
		if nNet >= 2 && nErr >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness saw %d network requests and %d errors, want ≥ 2 and ≥ 1", nNet, nErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFileURL: the page is addressed by its absolute path.
func TestFileURL(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := FileURL("page.html"), "file://"+filepath.ToSlash(filepath.Join(wd, "page.html")); got != want {
		t.Errorf("FileURL = %q, want %q", got, want)
	}
}
