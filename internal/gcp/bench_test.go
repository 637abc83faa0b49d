package gcp_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectome/internal/gcp"
)

// BenchmarkDownload: 256 objects of 512 KiB (one NLST slice each) through the real client,
// the fault-injecting front (passing everything) and fake-gcs-server, into a fresh cache with
// the verified temp-file-and-rename path, at 1, 8 and 32 objects in flight. With latency=0 the
// server shares the CPUs with the client, so this measures the client's own cost; latency=20ms
// adds a fixed delay per request, as a remote store's first byte, to show what the pool hides.
func BenchmarkDownload(b *testing.B) {
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%v", lat), func(b *testing.B) { benchDownload(b, lat) })
	}
}

func benchDownload(b *testing.B, latency time.Duration) {
	const nObj, size = 256, 512 << 10
	objs := map[string][]byte{}
	keys := make([]string, nObj)
	for i := range keys {
		keys[i] = fmt.Sprintf("11111111-2222-3333-4444-555555555555/%08x-0000-4000-8000-000000000000.dcm", i)
		objs[keys[i]] = content(uint64(i), size)
	}
	srv, store := startServerB(b, objs)
	srv.Latency = latency
	for _, conc := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			d := &gcp.Downloader{Store: store, Retries: 3, Timeout: time.Minute}
			var total time.Duration
			for b.Loop() {
				dir := b.TempDir()
				srv.ResetCounts()
				start := time.Now()
				jobs := make(chan string)
				var wg sync.WaitGroup
				var mu sync.Mutex
				var firstErr error
				for range conc {
					wg.Go(func() {
						for k := range jobs {
							if _, err := d.Download(context.Background(), bucket, k, filepath.Join(dir, k), size); err != nil {
								mu.Lock()
								firstErr = err
								mu.Unlock()
							}
						}
					})
				}
				for _, k := range keys {
					jobs <- k
				}
				close(jobs)
				wg.Wait()
				total += time.Since(start)
				if firstErr != nil {
					b.Fatal(firstErr)
				}
			}
			sec := total.Seconds() / float64(b.N)
			b.ReportMetric(float64(nObj)/sec, "objects/s")
			b.ReportMetric(float64(nObj*size)/sec/1e6, "MB/s")
		})
	}
}
