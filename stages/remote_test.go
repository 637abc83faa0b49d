package stages_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectome/internal/gcp"
	"connectome/internal/gcp/gcptest"
	"connectome/internal/layout"
	"connectome/pipeline"
)

// writeLog records, for the buckets of every simulated machine, the order of object writes,
// and fails the first write whose name ends in failName. A write is logged when its call
// returns, error or not: a request cut off by a cancelled context may still have been
// stored, and the marker-last check must see it.
type writeLog struct {
	mu       sync.Mutex
	writes   []string
	failName string
}

// loggedBucket is one machine's bucket client, writing through the shared log.
type loggedBucket struct {
	gcp.Bucket
	log *writeLog
}

func (b loggedBucket) Write(ctx context.Context, name string, r io.Reader) error {
	w := b.log
	w.mu.Lock()
	fail := w.failName != "" && strings.HasSuffix(name, w.failName)
	if fail {
		w.failName = ""
	}
	w.mu.Unlock()
	if fail {
		return errors.New("injected upload failure")
	}
	err := b.Bucket.Write(ctx, name, r)
	w.mu.Lock()
	w.writes = append(w.writes, name)
	w.mu.Unlock()
	return err
}

// runRemote runs one process against gs://bkt/run from its own working copy work (a machine
// of its own), as `connectome run --run-dir gs://bkt/run --work-dir work` does; wl, when not
// nil, logs its writes.
func (f *shardFixture) runRemote(ctx context.Context, t *testing.T, srv *gcptest.Server, wl *writeLog, work string, sh pipeline.Shard, only string, resume bool) (*pipeline.Summary, error) {
	u, err := gcp.ParseURL("gs://bkt/run")
	if err != nil {
		t.Fatal(err)
	}
	d, closeFn, err := gcp.Open(ctx, u, work, gcp.ClientOptions{Endpoint: srv.URL(), MaxAttempts: 2})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	if wl != nil {
		// The log hides the client's conditional writes: this run writes unconditionally.
		d.Bucket = loggedBucket{Bucket: d.Bucket, log: wl}
	}
	d.Exclude = []string{"dicom"}
	cfg := f.cfg
	cfg.RunDir = work
	return runChain(ctx, cfg, pipeline.Options{Only: only, Resume: resume, Shard: sh, Remote: d})
}

// startBucketRun is the start of the bucket tests: the fixture, a fake server with bucket
// bkt, a temp dir, and a single-process local run (in tmp/single) to compare with.
func startBucketRun(t *testing.T) (f *shardFixture, srv *gcptest.Server, tmp, single string) {
	t.Helper()
	ortEnv.Require(t)
	f = newShardFixture(t)
	tmp = t.TempDir()
	srv, err := gcptest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Fake.CreateBucket("bkt")
	single = filepath.Join(tmp, "single")
	if sum, err := f.run(context.Background(), t, single, pipeline.Shard{}, "", false); err != nil || sum.Failures != 0 {
		t.Fatalf("single-process run: %v (failures %v)", err, sum)
	}
	return f, srv, tmp, single
}

// TestShardedRunOnBucket runs the plan step, three shards and the merge, each from a working
// copy of its own, against one run directory in a (fake) bucket. Shard 1's last upload of
// embed fails: its embed marker object must not exist, the merge must halt naming it, and the
// resumed shard (from a fresh machine) completes. Every marker object is written after every
// object of its stage directory; the merged tables equal a local single-process run's.
func TestShardedRunOnBucket(t *testing.T) {
	f, srv, tmp, single := startBucketRun(t)
	ctx := context.Background()
	wl := &writeLog{}

	const n = 3
	all := pipeline.AllShards(n)
	if _, err := f.runRemote(ctx, t, srv, wl, filepath.Join(tmp, "plan"), all, "cohort", false); err != nil {
		t.Fatalf("plan step: %v", err)
	}
	work := func(name string) string { return filepath.Join(tmp, "machine", name) }
	// Shard 1 is killed once it has preprocessed a lesion; shard 2's upload of its embeddings
	// part of the second model fails: its last stage's push, midway.
	wl.failName = "embed/shard-2-of-3/test-conv-b.arrow"
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			sh := pipeline.Shard{Index: i, Count: n}
			sctx := ctx
			if i == 1 {
				var cancel context.CancelFunc
				sctx, cancel = context.WithCancel(ctx)
				defer cancel()
				go func() {
					if preprocessing(sctx, work("1"), sh) {
						cancel()
					}
				}()
			}
			_, errs[i] = f.runRemote(sctx, t, srv, wl, work(fmt.Sprint(i)), sh, "", true)
		})
	}
	wg.Wait()
	if errs[0] != nil {
		t.Fatalf("shard 0: %v", errs[0])
	}
	if !errors.Is(errs[1], pipeline.ErrInterrupted) {
		t.Fatalf("shard 1: %v, want interrupted", errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "injected upload failure") {
		t.Fatalf("shard 2: %v, want the injected upload failure", errs[2])
	}
	for _, i := range []int{1, 2} {
		if _, err := srv.Fake.GetObject("bkt", fmt.Sprintf("run/embed/shard-%d-of-3/%s", i, pipeline.MarkerFile)); err == nil {
			t.Fatalf("shard %d has an embed marker object", i)
		}
	}
	// The interrupted shard pushed what it had, without markers, on its way out.
	if _, err := srv.Fake.GetObject("bkt", "run/preprocess/shard-1-of-3/_STARTED.json"); err != nil {
		t.Errorf("interrupted shard 1 left no _STARTED.json object: %v", err)
	}
	if _, err := f.runRemote(ctx, t, srv, wl, work("merge-early"), all, "", false); err == nil || !strings.Contains(err.Error(), "shards 1 of 3") {
		t.Fatalf("merge without shard 1's marker objects: %v, want a halt naming it", err)
	}
	// Shard 1 again on a fresh machine: it starts from the bucket alone.
	if _, err := f.runRemote(ctx, t, srv, wl, work("1-fresh"), pipeline.Shard{Index: 1, Count: n}, "", true); err != nil {
		t.Fatalf("shard 1 on a fresh machine: %v", err)
	}
	if _, err := f.runRemote(ctx, t, srv, wl, work("merge-early"), all, "", false); err == nil || !strings.Contains(err.Error(), "stage embed") || !strings.Contains(err.Error(), "shards 2 of 3") {
		t.Fatalf("merge without shard 2's embed marker object: %v, want a halt naming it", err)
	}
	// Shard 2 again on the same machine: its working copy has an embed marker whose object
	// never came, which must not count; the embedded lesions are kept and the push redone.
	if _, err := f.runRemote(ctx, t, srv, wl, work("2"), pipeline.Shard{Index: 2, Count: n}, "", true); err != nil {
		t.Fatalf("shard 2 resumed: %v", err)
	}
	m, ok, err := pipeline.ReadMarker(work("2"), layout.Embed, pipeline.Shard{Index: 2, Count: n})
	if err != nil || !ok || m.Counts["resumed"] < 1 {
		t.Fatalf("resumed shard 2's embed marker %+v (%v, %v): want the embedded lesions kept", m, ok, err)
	}
	// Shard 0 on a fresh machine finds every stage done in the bucket.
	if sum, err := f.runRemote(ctx, t, srv, wl, work("0-fresh"), pipeline.Shard{Index: 0, Count: n}, "", true); err != nil || sum.Stages[1].Status != "skipped" || sum.Stages[3].Status != "skipped" {
		t.Fatalf("shard 0 on a fresh machine: %v %+v, want its stages skipped", err, sum)
	}

	merge := work("merge")
	if sum, err := f.runRemote(ctx, t, srv, wl, merge, all, "", false); err != nil || sum.Failures != 0 {
		t.Fatalf("merge: %v (%+v)", err, sum)
	}
	compareRuns(t, single, merge)
	for _, obj := range []string{"run/report/index.html", "run/similarity/edges.arrow", "run/similarity/" + pipeline.MarkerFile, "run/manifest.json"} {
		if _, err := srv.Fake.GetObject("bkt", obj); err != nil {
			t.Errorf("object %s: %v", obj, err)
		}
	}
	// The merge pulled the shards' markers, failure journals and published outputs, not
	// their work files (tensors, per-lesion records, the record of their start).
	var names []string
	ents, _ := os.ReadDir(layout.New(merge, pipeline.Shard{Index: 0, Count: n}).StageDir(layout.Preprocess))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{pipeline.MarkerFile, "_failures.jsonl", "patches.arrow", "qc"}; !slices.Equal(names, want) {
		t.Errorf("merge's copy of preprocess/shard-0-of-3 holds %v, want %v", names, want)
	}

	// Marker last: every object of a stage directory was written before its marker object,
	// the last time that marker was written.
	lastMarker := map[string]int{}
	for i, w := range wl.writes {
		if path.Base(w) == pipeline.MarkerFile {
			lastMarker[path.Dir(w)] = i
		}
	}
	if len(lastMarker) < 3*n+3 {
		t.Fatalf("%d marker objects written: %v", len(lastMarker), lastMarker)
	}
	for i, w := range wl.writes {
		if path.Base(w) == pipeline.MarkerFile {
			continue
		}
		dir := path.Dir(w)
		for dir != "." && dir != "/" {
			if mi, ok := lastMarker[dir]; ok && i > mi {
				// An object after its directory's final marker is only allowed in the
				// manifest-level files that have no marker.
				t.Errorf("object %s written after its stage marker %s/%s", w, dir, pipeline.MarkerFile)
			}
			dir = path.Dir(dir)
		}
	}
}

// TestConcurrentAttemptsOfOneShard runs two attempts of shard 1 at once, each from a machine
// of its own (a Cloud Batch task retried while its first attempt still writes), against one
// bucket, with the client's generation preconditions. The second attempt starts once the
// first is preprocessing, claims the shard and takes over; the first either finished before
// that or stops with an error naming the second. The merged tables equal a single-process
// run's: no part of the first attempt is mixed into the second's.
func TestConcurrentAttemptsOfOneShard(t *testing.T) {
	f, srv, tmp, single := startBucketRun(t)
	ctx := context.Background()
	const n = 3
	all := pipeline.AllShards(n)
	if _, err := f.runRemote(ctx, t, srv, nil, filepath.Join(tmp, "plan"), all, "cohort", false); err != nil {
		t.Fatalf("plan step: %v", err)
	}
	work := func(name string) string { return filepath.Join(tmp, "machine", name) }
	sh := pipeline.Shard{Index: 1, Count: n}

	var wg sync.WaitGroup
	var first, second error
	wg.Go(func() { _, first = f.runRemote(ctx, t, srv, nil, work("1-first"), sh, "", true) })
	wctx, cancelWait := context.WithTimeout(ctx, time.Minute)
	started := preprocessing(wctx, work("1-first"), sh)
	cancelWait()
	if !started {
		t.Fatal("the first attempt never started preprocessing")
	}
	wg.Go(func() { _, second = f.runRemote(ctx, t, srv, nil, work("1-second"), sh, "", true) })
	wg.Wait()
	if second != nil {
		t.Fatalf("the second attempt: %v", second)
	}
	if first != nil && !strings.Contains(first.Error(), "another attempt took over") {
		t.Fatalf("the first attempt: %v, want nil or a stop naming the second", first)
	}
	t.Logf("first attempt: %v", first)

	for _, i := range []int{0, 2} {
		if _, err := f.runRemote(ctx, t, srv, nil, work(fmt.Sprint(i)), pipeline.Shard{Index: i, Count: n}, "", true); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	merge := work("merge")
	if sum, err := f.runRemote(ctx, t, srv, nil, merge, all, "", false); err != nil || sum.Failures != 0 {
		t.Fatalf("merge: %v (%+v)", err, sum)
	}
	compareRuns(t, single, merge)
}
