package gcp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectome/internal/gcp/gcptest"
	"connectome/pipeline"
)

// recorder wraps a Bucket, records the order of object writes and fails the write number
// failAt (1-based; 0 never).
type recorder struct {
	Bucket
	mu     sync.Mutex
	writes []string
	failAt int
	n      int
}

type faultBucket struct{ *recorder }

func (f faultBucket) Write(ctx context.Context, name string, rd io.Reader) error {
	f.mu.Lock()
	f.n++
	fail := f.n == f.failAt
	f.mu.Unlock()
	if fail {
		return errors.New("injected upload failure")
	}
	if err := f.Bucket.Write(ctx, name, rd); err != nil {
		return err
	}
	f.mu.Lock()
	f.writes = append(f.writes, name)
	f.mu.Unlock()
	return nil
}

func newFake(t *testing.T) (*gcptest.Server, *Dir, func() error) {
	t.Helper()
	srv, err := gcptest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Fake.CreateBucket("bkt")
	u, _ := ParseURL("gs://bkt/runs/r1")
	d, closeFn, err := Open(context.Background(), u, t.TempDir(), ClientOptions{Endpoint: srv.URL(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFn() })
	return srv, d, closeFn
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, b Bucket, prefix string) []string {
	t.Helper()
	objs, err := b.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, strings.TrimPrefix(o.Name, prefix))
	}
	slices.Sort(out)
	return out
}

func TestPushMarkerLastAndFailedUploadLeavesNoMarker(t *testing.T) {
	ctx := context.Background()
	_, d, _ := newFake(t)
	real := d.Bucket
	rec := &recorder{Bucket: real, failAt: 3}
	d.Bucket = faultBucket{rec}
	d.Exclude = []string{"dicom"}
	for _, f := range []string{"embed/a.arrow", "embed/b.bin", "embed/c/d.txt", "embeddings/m/part-0-of-2.arrow", "dicom/x.dcm", "embed/.e.arrow.tmp-123"} {
		write(t, d.Local, f, "content of "+f)
	}
	write(t, d.Local, "embed/"+pipeline.MarkerFile, "{}")
	if err := d.Push(ctx, "embed/"+pipeline.MarkerFile); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("push with a failing upload: %v", err)
	}
	if got := names(t, real, "runs/r1/"); slices.Contains(got, "embed/"+pipeline.MarkerFile) {
		t.Fatalf("marker uploaded after a failed upload: %v", got)
	}
	// A reader of the bucket (another machine) takes the stage as not done, and so does the
	// working copy once pulled: its marker has no object.
	if err := d.Pull(ctx, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Local, "embed", pipeline.MarkerFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("local marker kept without its object: %v", err)
	}

	// The retry uploads what is missing, then the marker last.
	write(t, d.Local, "embed/"+pipeline.MarkerFile, "{}")
	rec.writes = nil
	if err := d.Push(ctx, "embed/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) == 0 || rec.writes[len(rec.writes)-1] != "runs/r1/embed/"+pipeline.MarkerFile {
		t.Fatalf("write order %v: want the marker last", rec.writes)
	}
	want := []string{"embed/" + pipeline.MarkerFile, "embed/a.arrow", "embed/b.bin", "embed/c/d.txt", "embeddings/m/part-0-of-2.arrow"}
	if got := names(t, real, "runs/r1/"); !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v (no DICOM cache, no temp files)", got, want)
	}

	// Nothing changed: nothing is sent again but the marker.
	rec.writes = nil
	if err := d.Push(ctx, "embed/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.writes, []string{"runs/r1/embed/" + pipeline.MarkerFile}) {
		t.Fatalf("unchanged push wrote %v", rec.writes)
	}

	// The stage runs again and writes other files: the stale object goes before the marker,
	// and the shard directories inside the stage directory are not touched.
	write(t, d.Local, "embed/shard-1-of-2/x", "other process")
	if err := real.Write(ctx, "runs/r1/embed/shard-0-of-2/y", strings.NewReader("other shard")); err != nil {
		t.Fatal(err)
	}
	if err := d.Invalidate(ctx, "embed/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d.Local, "embed", "b.bin")); err != nil {
		t.Fatal(err)
	}
	if err := d.Push(ctx, "embed/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	got := names(t, real, "runs/r1/embed/")
	if slices.Contains(got, "b.bin") || !slices.Contains(got, "shard-0-of-2/y") || !slices.Contains(got, pipeline.MarkerFile) {
		t.Fatalf("after the re-run: %v", got)
	}
}

func TestPullKeepsUnchangedAndFilters(t *testing.T) {
	ctx := context.Background()
	_, d, _ := newFake(t)
	for _, o := range []string{"cohort/lesions.arrow", "cohort/" + pipeline.MarkerFile, "fetch/shard-0-of-2/j", "manifest.json"} {
		if err := d.Bucket.Write(ctx, "runs/r1/"+o, strings.NewReader("x"+o)); err != nil {
			t.Fatal(err)
		}
	}
	want := func(rel string) bool { return strings.HasPrefix(rel, "cohort/") }
	if err := d.Pull(ctx, want); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.Local, "cohort", "lesions.arrow"))
	if err != nil || string(b) != "xcohort/lesions.arrow" {
		t.Fatalf("pulled %q, %v", b, err)
	}
	for _, rel := range []string{"fetch/shard-0-of-2/j", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(d.Local, rel)); err == nil {
			t.Errorf("%s pulled, not wanted", rel)
		}
	}
	// Pushing right after a pull sends nothing.
	rec := &recorder{Bucket: d.Bucket}
	d.Bucket = faultBucket{rec}
	if err := d.Push(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 0 {
		t.Fatalf("push after pull wrote %v", rec.writes)
	}
}

func TestOpenMissingBucketHalts(t *testing.T) {
	srv, err := gcptest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u, _ := ParseURL("gs://no-such-bucket/x")
	if _, _, err := Open(context.Background(), u, t.TempDir(), ClientOptions{Endpoint: srv.URL(), MaxAttempts: 1}); err == nil || !strings.Contains(err.Error(), "gs://no-such-bucket/x") {
		t.Fatalf("open of a missing bucket: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"gs://bkt/runs/a", "bkt", "runs/a", true},
		{"gs://bkt/runs/a/", "bkt", "runs/a", true},
		{"gs://bkt", "bkt", "", true},
		{"gs://bkt/../x", "", "", false},
		{"gs://bkt/a//b", "", "", false},
		{"gs://B_K/x", "", "", false},
		{"/local/dir", "", "", false},
		{"gs://bkt/a/./b", "", "", false},
	} {
		u, err := ParseURL(c.in)
		if (err == nil) != c.ok || u.Bucket != c.bucket || u.Prefix != c.prefix {
			t.Errorf("ParseURL(%q) = %+v, %v", c.in, u, err)
		}
	}
}

func TestOpenWithoutRightsSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":403,"message":"caller does not have storage.objects.list access"}}`)
	}))
	defer srv.Close()
	u, _ := ParseURL("gs://bkt/x")
	_, _, err := Open(context.Background(), u, t.TempDir(), ClientOptions{Endpoint: srv.URL, MaxAttempts: 1})
	if err == nil || !strings.Contains(err.Error(), "no access (HTTP 403)") || !strings.Contains(err.Error(), "objectAdmin") {
		t.Fatalf("open without rights: %v", err)
	}
}
