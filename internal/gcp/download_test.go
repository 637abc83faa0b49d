package gcp_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"connectome/internal/atomicfile"
	"connectome/internal/gcp"
	"connectome/internal/gcp/gcptest"
)

// The bucket is deliberately not an IDC bucket: nothing may assume one.
const bucket = "test-open-bucket"

func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func startServer(t *testing.T, objs map[string][]byte) (*gcptest.Server, gcp.ObjectStore) {
	return startServerB(t, objs)
}

func startServerB(t testing.TB, objs map[string][]byte) (*gcptest.Server, gcp.ObjectStore) {
	t.Helper()
	var init []fakestorage.Object
	for k, v := range objs {
		init = append(init, fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: k}, Content: v})
	}
	srv, err := gcptest.New(init)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store, err := gcp.NewGCSClient(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return srv, store
}

func TestDownloadFaults(t *testing.T) {
	const key = "11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm"
	data := content(1, 300_000)
	A := gcptest.Pass
	cases := []struct {
		name      string
		fault     gcptest.Fault
		key       string // default key
		wantSize  int64
		retries   int
		wantKind  gcp.Kind // "" = success
		wantReqs  int      // exact download requests; 0 = don't check
		minReqs   int
		maxReqs   int
		maxSecond float64
		timeout   time.Duration // per attempt; default 10 s, so a loaded machine does not retry
	}{
		{name: "clean", wantReqs: 1},
		{name: "503 burst then ok", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.Status503, gcptest.Status503, gcptest.Status503}}, retries: 5, wantReqs: 4},
		{name: "429 and 500 then ok", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.Status429, gcptest.Status500}}, retries: 5, wantReqs: 3},
		{name: "503 forever", fault: gcptest.Fault{Then: gcptest.Status503}, retries: 3, wantKind: gcp.KindNetwork, wantReqs: 4},
		// The client resumes a broken body with a ranged request, or the next attempt
		// re-reads the object; either way the result must be whole.
		{name: "reset mid-body once", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.ResetBody}}, retries: 3, minReqs: 2, maxReqs: 3},
		{name: "truncated body once", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.Truncate}}, retries: 3, minReqs: 2, maxReqs: 3},
		{name: "corrupt once", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.Corrupt}}, retries: 3, wantReqs: 2},
		{name: "corrupt forever", fault: gcptest.Fault{Then: gcptest.Corrupt}, retries: 2, wantKind: gcp.KindChecksum, wantReqs: 3},
		{name: "404 is not retried", key: "11111111-2222-3333-4444-555555555555/00000000-0000-0000-0000-000000000000.dcm", retries: 5, wantKind: gcp.KindNotFound, wantReqs: 1},
		{name: "slow object hits deadline", fault: gcptest.Fault{Then: gcptest.Stall}, retries: 1, wantKind: gcp.KindTimeout, wantReqs: 2, maxSecond: 3, timeout: 300 * time.Millisecond},
		{name: "stalled body hits deadline", fault: gcptest.Fault{Then: gcptest.StallBody}, retries: 1, wantKind: gcp.KindTimeout, minReqs: 2, maxReqs: 4, maxSecond: 3, timeout: 300 * time.Millisecond},
		{name: "stall once then ok", fault: gcptest.Fault{Seq: []gcptest.Action{gcptest.Stall}, Then: A}, retries: 2, wantReqs: 2, timeout: 300 * time.Millisecond},
		{name: "size differs from table", wantSize: 12345, retries: 5, wantKind: gcp.KindInput, wantReqs: 1},
	}
	srv, store := startServer(t, map[string][]byte{key: data})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.key
			if k == "" {
				k = key
			}
			srv.SetFault(k, tc.fault)
			dir := t.TempDir()
			dst := filepath.Join(dir, "x", "obj.dcm")
			if tc.timeout == 0 {
				tc.timeout = 10 * time.Second
			}
			d := &gcp.Downloader{Store: store, Retries: tc.retries, Timeout: tc.timeout,
				BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}
			start := time.Now()
			res, err := d.Download(context.Background(), bucket, k, dst, tc.wantSize)
			elapsed := time.Since(start).Seconds()
			reqs := srv.Requests(k)
			if tc.wantKind == "" {
				if err != nil {
					t.Fatalf("download: %v", err)
				}
				got, rerr := os.ReadFile(dst)
				if rerr != nil || !bytes.Equal(got, data) {
					t.Fatalf("file differs from object (err %v, %d bytes)", rerr, len(got))
				}
				if res.Bytes != int64(len(data)) {
					t.Errorf("Result.Bytes = %d, want %d", res.Bytes, len(data))
				}
			} else {
				var de *gcp.Error
				if !errors.As(err, &de) || de.Kind != tc.wantKind {
					t.Fatalf("err = %v, want kind %s", err, tc.wantKind)
				}
				if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
					t.Errorf("a failed download left %s (stat err %v)", dst, serr)
				}
			}
			if tc.wantReqs > 0 && reqs != tc.wantReqs {
				t.Errorf("%d download requests, want %d", reqs, tc.wantReqs)
			}
			if tc.minReqs > 0 && (reqs < tc.minReqs || reqs > tc.maxReqs) {
				t.Errorf("%d download requests, want %d..%d", reqs, tc.minReqs, tc.maxReqs)
			}
			if tc.maxSecond > 0 && elapsed > tc.maxSecond {
				t.Errorf("took %.1fs, want under %.0fs", elapsed, tc.maxSecond)
			}
			assertNoTemp(t, dir)
		})
	}
}

func TestDownloadDiskError(t *testing.T) {
	const key = "11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm"
	_, store := startServer(t, map[string][]byte{key: content(2, 1000)})
	dir := t.TempDir()
	// The parent of dst is a regular file: the cache cannot be written, whatever the object.
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &gcp.Downloader{Store: store, Retries: 3, BackoffBase: time.Millisecond}
	_, err := d.Download(context.Background(), bucket, key, filepath.Join(dir, "f", "obj.dcm"), 0)
	var de *gcp.Error
	if !errors.As(err, &de) || de.Kind != gcp.KindDisk || de.Attempts != 1 {
		t.Fatalf("err = %v, want one attempt of kind disk", err)
	}
}

func TestDownloadCancelled(t *testing.T) {
	const key = "11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm"
	srv, store := startServer(t, map[string][]byte{key: content(3, 1000)})
	srv.SetFault(key, gcptest.Fault{Then: gcptest.Stall})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d := &gcp.Downloader{Store: store, Retries: 100, Timeout: 10 * time.Second}
	_, err := d.Download(ctx, bucket, key, filepath.Join(t.TempDir(), "o.dcm"), 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if n := srv.Requests(key); n != 1 {
		t.Errorf("%d requests after cancel, want 1", n)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (atomicfile.IsTemp(d.Name()) || strings.Contains(d.Name(), ".tmp-")) {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
}
