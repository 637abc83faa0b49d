package gcp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	"connectome/internal/gcp"
	"connectome/internal/gcp/gcptest"
)

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	apiErr := func(code int, v string) error {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		return &googleapi.Error{Code: code, Header: h}
	}
	cases := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"429 seconds", apiErr(429, "1"), time.Second, true},
		{"503 seconds", apiErr(503, " 7 "), 7 * time.Second, true},
		{"zero", apiErr(429, "0"), 0, true},
		{"http date", apiErr(503, now.Add(90*time.Second).Format(http.TimeFormat)), 90 * time.Second, true},
		{"date in the past", apiErr(429, now.Add(-time.Hour).Format(http.TimeFormat)), 0, true},
		{"huge is clamped to a day", apiErr(429, "99999999999999999"), 24 * time.Hour, true},
		{"wrapped", fmt.Errorf("open: %w", apiErr(429, "3")), 3 * time.Second, true},
		{"negative", apiErr(429, "-1"), 0, false},
		{"garbage", apiErr(429, "soon"), 0, false},
		{"fractional", apiErr(429, "1.5"), 0, false},
		{"no header", apiErr(429, ""), 0, false},
		{"500 is not asked to wait", apiErr(500, "5"), 0, false},
		{"not an HTTP error", errors.New("connection reset"), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := gcp.RetryAfter(tc.err, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// The storage client must hand the header of a read's 429 through to us: checked with the
// real client against the fault injector, not with a hand-made error.
func TestDownloadHonoursRetryAfter(t *testing.T) {
	const key = "11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm"
	data := content(4, 50_000)
	srv, store := startServer(t, map[string][]byte{key: data})

	t.Run("429 with Retry-After 1 waits a second, then succeeds", func(t *testing.T) {
		srv.SetFault(key, gcptest.Fault{Seq: []gcptest.Action{gcptest.Status429}, RetryAfter: "1"})
		var seen time.Duration
		var seenOK bool
		// Backoff alone would wait about a millisecond.
		d := &gcp.Downloader{Store: store, Retries: 3, Timeout: 10 * time.Second,
			BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond,
			OnRetry: func(_, _ string, _ int, err error) { seen, seenOK = gcp.RetryAfter(err, time.Now()) }}
		dst := filepath.Join(t.TempDir(), "o.dcm")
		start := time.Now()
		res, err := d.Download(context.Background(), bucket, key, dst, int64(len(data)))
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if !seenOK || seen != time.Second {
			t.Errorf("the client's error carried Retry-After %v (found %v), want 1s", seen, seenOK)
		}
		if res.Attempts != 2 || srv.Requests(key) != 2 {
			t.Errorf("%d attempts, %d requests; want 2 and 2", res.Attempts, srv.Requests(key))
		}
		if elapsed < time.Second || elapsed > 8*time.Second {
			t.Errorf("took %v, want at least the 1 s the server asked for", elapsed)
		}
		t.Logf("429 Retry-After: 1 → success after %v", elapsed.Round(time.Millisecond))
		if got, _ := os.ReadFile(dst); len(got) != len(data) {
			t.Errorf("file has %d bytes, want %d", len(got), len(data))
		}
	})

	t.Run("huge Retry-After past the deadline fails at once", func(t *testing.T) {
		srv.SetFault(key, gcptest.Fault{Then: gcptest.Status429, RetryAfter: "3600"})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d := &gcp.Downloader{Store: store, Retries: 5, Timeout: 10 * time.Second, BackoffBase: time.Millisecond}
		dir := t.TempDir()
		start := time.Now()
		_, err := d.Download(ctx, bucket, key, filepath.Join(dir, "o.dcm"), 0)
		elapsed := time.Since(start)
		var de *gcp.Error
		if !errors.As(err, &de) || de.Kind != gcp.KindTimeout || de.Attempts != 1 {
			t.Fatalf("err = %v, want one attempt of kind timeout", err)
		}
		if !strings.Contains(err.Error(), "retry after 1h0m0s") || !strings.Contains(err.Error(), "429") {
			t.Errorf("error %q does not say what the server asked for", err)
		}
		if elapsed > 2*time.Second {
			t.Errorf("took %v, want a prompt failure well inside the 5 s deadline", elapsed)
		}
		t.Logf("429 Retry-After: 3600 with a 5 s deadline → %s after %v", de.Kind, elapsed.Round(time.Millisecond))
		assertNoTemp(t, dir)
	})

	t.Run("huge Retry-After without a deadline is capped", func(t *testing.T) {
		srv.SetFault(key, gcptest.Fault{Then: gcptest.Status503, RetryAfter: "3600"})
		d := &gcp.Downloader{Store: store, Retries: 2, Timeout: 10 * time.Second,
			BackoffBase: time.Millisecond, MaxRetryAfter: 300 * time.Millisecond}
		start := time.Now()
		_, err := d.Download(context.Background(), bucket, key, filepath.Join(t.TempDir(), "o.dcm"), 0)
		elapsed := time.Since(start)
		var de *gcp.Error
		if !errors.As(err, &de) || de.Kind != gcp.KindNetwork || de.Attempts != 3 {
			t.Fatalf("err = %v, want 3 attempts of kind network", err)
		}
		// Two capped waits of 300 ms, not two hours and not two backoffs of ~1 ms.
		if elapsed < 600*time.Millisecond || elapsed > 5*time.Second {
			t.Errorf("took %v, want about 2 × 300 ms", elapsed)
		}
		t.Logf("503 Retry-After: 3600, cap 300 ms, 2 retries → %s after %v", de.Kind, elapsed.Round(time.Millisecond))
	})
}
