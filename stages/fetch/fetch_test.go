package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectome/internal/gcp/gcptest"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/preprocess"
)

// plannedKeys is the union of the exact planner's slices over the test models, per lesion.
func plannedKeys(t *testing.T, f *fixture) map[string][]string {
	t.Helper()
	specs, err := testRegistry(t).Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	bySeries := map[string][]tables.Instance{}
	for _, in := range f.instances {
		bySeries[in.SeriesInstanceUID] = append(bySeries[in.SeriesInstanceUID], in)
	}
	out := map[string][]string{}
	for _, l := range f.lesions {
		sops, _, err := planSlices(PatchPlanner{}, bySeries[l.SeriesInstanceUID], l, cropsOf(specs, []models.Preprocess{preprocess.QCCrop()}))
		if err != nil {
			t.Fatalf("plan %s: %v", l.LesionID, err)
		}
		for _, in := range bySeries[l.SeriesInstanceUID] {
			if sops[in.SOPInstanceUID] {
				out[l.LesionID] = append(out[l.LesionID], keyOf(in))
			}
		}
	}
	return out
}

func TestFetchPlansAndDownloadsOnlyTheCrops(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 300, spacing: 2.5, z0: -400, objSize: 2000}, {n: 120, spacing: 1.25, z0: -200, objSize: 1500}},
		[][2]float64{{0, 0.5}, {0, 0.52}, {1, 0.3}, {0, 0.02}})
	runDir := t.TempDir()
	cache := filepath.Join(t.TempDir(), "shared-cache")
	f.write(t, runDir)
	env := newTestEnv(t, f, nil)
	want := plannedKeys(t, f)
	union := map[string]bool{}
	for _, ks := range want {
		for _, k := range ks {
			union[k] = true
		}
	}

	st := newTestStage(testSettings(cache), testRegistry(t), env.store, nil)
	c, err := runFetch(context.Background(), t, runDir, st, false)
	if err != nil {
		t.Fatal(err)
	}
	got := c.emitted()
	slices.Sort(got)
	if !slices.Equal(got, []string{"L000", "L001", "L002", "L003"}) {
		t.Fatalf("emitted %v", got)
	}
	if n := env.srv.TotalRequests(); n != len(union) {
		t.Errorf("%d download requests, want one per planned object (%d)", n, len(union))
	}
	if n := scanCache(t, cache, f.content, false); n != len(union) {
		t.Errorf("%d files in the cache, want %d", n, len(union))
	}
	for k := range union {
		if _, err := os.Stat(filepath.Join(cache, k)); err != nil {
			t.Errorf("planned object %s not in cache: %v", k, err)
		}
	}
	m, ok, err := pipeline.ReadMarker(runDir, "fetch", pipeline.Shard{})
	if err != nil || !ok {
		t.Fatalf("marker: %v %v", ok, err)
	}
	// Series 0 at 2.5 mm: a 48–60 mm crop needs about 25 of 300 slices.
	frac := float64(m.Counts["bytes_planned"]) / float64(m.Counts["bytes_whole_series"])
	if m.Counts["objects_downloaded"] != int64(len(union)) || frac <= 0 || frac >= 0.25 {
		t.Errorf("counts %v: fraction of series bytes %.3f", m.Counts, frac)
	}
	if m.Counts["lesions"] != 4 {
		t.Errorf("counts %v: want 4 lesions", m.Counts)
	}

	// A second run on the shared cache downloads nothing and still hands every lesion on.
	runDir2 := t.TempDir()
	f.write(t, runDir2)
	env.srv.ResetCounts()
	c2, err := runFetch(context.Background(), t, runDir2, newTestStage(testSettings(cache), testRegistry(t), env.store, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if n := env.srv.TotalRequests(); n != 0 || len(c2.emitted()) != 4 {
		t.Errorf("second run: %d requests, %d lesions emitted; want 0 and 4", n, len(c2.emitted()))
	}
}

// Every fault of the issue, each on a different lesion's object, in one run.
func TestFetchFaults(t *testing.T) {
	f := buildFixture([]seriesSpec{
		{n: 40, spacing: 2.5, z0: 0, objSize: 40_000}, {n: 40, spacing: 2.5, z0: 0, objSize: 40_000},
		{n: 40, spacing: 2.5, z0: 0, objSize: 40_000}, {n: 40, spacing: 2.5, z0: 0, objSize: 40_000},
		{n: 40, spacing: 2.5, z0: 0, objSize: 40_000}, {n: 40, spacing: 2.5, z0: 0, objSize: 40_000},
		{n: 40, spacing: 2.5, z0: 0, objSize: 40_000}, {n: 40, spacing: 2.5, z0: 0, objSize: 40_000},
		{n: 40, spacing: 2.5, z0: 0, objSize: 40_000},
	}, [][2]float64{{0, .5}, {1, .5}, {2, .5}, {3, .5}, {4, .5}, {5, .5}, {6, .5}, {7, .5}, {8, .5}})
	want := plannedKeys(t, f)
	victim := func(lesion string) string { return want[lesion][len(want[lesion])/2] }
	missing := victim("L006")
	env := newTestEnv(t, f, map[string]bool{missing: true})
	A := func(a ...gcptest.Action) []gcptest.Action { return a }
	faults := map[string]gcptest.Fault{
		"L000": {Seq: A(gcptest.Status503, gcptest.Status503, gcptest.Status503)},          // recovers
		"L001": {Seq: A(gcptest.ResetBody)},                                                // recovers
		"L002": {Seq: A(gcptest.Truncate)},                                                 // recovers
		"L003": {Seq: A(gcptest.Corrupt)},                                                  // recovers
		"L004": {Then: gcptest.Corrupt},                                                    // checksum
		"L005": {Then: gcptest.Status503},                                                  // network
		"L007": {Then: gcptest.Stall},                                                      // timeout
		"L008": {Seq: A(gcptest.Status429, gcptest.StallBody, gcptest.Status500), Then: 0}, // recovers
	}
	for l, fl := range faults {
		env.srv.SetFault(victim(l), fl)
	}
	runDir, cache := t.TempDir(), t.TempDir()
	f.write(t, runDir)

	// Watch the cache while the run goes: a file under its final name must always be whole.
	stop := make(chan struct{})
	var watched sync.WaitGroup
	var scans atomic.Int64
	watched.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			scanCache(t, cache, f.content, true)
			scans.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	})
	s := testSettings(cache)
	s.ObjectTimeout = "1s"
	start := time.Now()
	c, err := runFetch(context.Background(), t, runDir, newTestStage(s, testRegistry(t), env.store, nil), false)
	close(stop)
	watched.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("run took %v", time.Since(start))
	}
	got := c.emitted()
	slices.Sort(got)
	if !slices.Equal(got, []string{"L000", "L001", "L002", "L003", "L008"}) {
		t.Errorf("emitted %v", got)
	}
	fails := failuresByItem(t, runDir)
	for l, class := range map[string]string{"L004": pipeline.ClassChecksum, "L005": pipeline.ClassNetwork,
		"L006": pipeline.ClassNotFound, "L007": pipeline.ClassTimeout} {
		if fails[l].ErrorClass != class || fails[l].Stage != "fetch" {
			t.Errorf("%s: failure %+v, want class %s", l, fails[l], class)
		}
	}
	if len(fails) != 4 {
		t.Errorf("%d failures, want 4: %v", len(fails), fails)
	}
	// A 404 is asked once; the bounded retries are retries+1 attempts.
	if n := env.srv.Requests(missing); n != 1 {
		t.Errorf("missing object requested %d times, want 1", n)
	}
	for l, n := range map[string]int{"L004": 4, "L005": 4, "L007": 4, "L000": 4, "L003": 2} {
		if got := env.srv.Requests(victim(l)); got != n {
			t.Errorf("%s: %d requests for the faulty object, want %d", l, got, n)
		}
	}
	for _, k := range []string{victim("L004"), victim("L005"), victim("L007"), missing} {
		if _, err := os.Stat(filepath.Join(cache, k)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed object %s is in the cache (%v)", k, err)
		}
	}
	scanCache(t, cache, f.content, false)
	if scans.Load() < 3 {
		t.Errorf("the cache was scanned only %d times during the run", scans.Load())
	}
	t.Logf("%d scans of the cache during the run", scans.Load())
}

func TestFetchCancelAndResume(t *testing.T) {
	var seeds [][2]float64
	var specs []seriesSpec
	for i := 0; i < 12; i++ {
		specs = append(specs, seriesSpec{n: 60, spacing: 2.5, z0: 0, objSize: 8000})
		seeds = append(seeds, [2]float64{float64(i), 0.5})
	}
	f := buildFixture(specs, seeds)
	env := newTestEnv(t, f, nil)
	planned := 0
	for _, ks := range plannedKeys(t, f) {
		planned += len(ks)
	}
	runDir, cache := t.TempDir(), t.TempDir()
	f.write(t, runDir)
	s := testSettings(cache)
	s.Concurrency = 4

	// Cancel once about a third of the objects have been asked for.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for env.srv.TotalRequests() < planned/3 {
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
	}()
	_, err := runFetch(ctx, t, runDir, newTestStage(s, testRegistry(t), env.store, nil), false)
	if !errors.Is(err, pipeline.ErrInterrupted) {
		t.Fatalf("first run: err = %v, want interrupted", err)
	}
	have := scanCache(t, cache, f.content, false)
	if have == 0 || have >= planned {
		t.Fatalf("after the cancel %d of %d objects are cached; want some but not all", have, planned)
	}
	if _, ok, _ := pipeline.ReadMarker(runDir, "fetch", pipeline.Shard{}); ok {
		t.Fatal("an interrupted fetch wrote its marker")
	}

	env.srv.ResetCounts()
	c, err := runFetch(context.Background(), t, runDir, newTestStage(s, testRegistry(t), env.store, nil), true)
	if err != nil {
		t.Fatal(err)
	}
	if n := env.srv.TotalRequests(); n != planned-have {
		t.Errorf("resume made %d requests, want exactly the %d missing objects", n, planned-have)
	}
	if len(c.emitted()) != 12 {
		t.Errorf("resume emitted %d lesions, want 12", len(c.emitted()))
	}
	if n := scanCache(t, cache, f.content, false); n != planned {
		t.Errorf("%d objects cached after resume, want %d", n, planned)
	}
	m, _, _ := pipeline.ReadMarker(runDir, "fetch", pipeline.Shard{})
	if m.Counts["objects_cached"] != int64(have) || m.Counts["objects_downloaded"] != int64(planned-have) {
		t.Errorf("resume counts %v, want %d cached and %d downloaded", m.Counts, have, planned-have)
	}
}

func TestFetchHaltsOnFullDisk(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 100, spacing: 2.5, z0: 0, objSize: 10_000}}, [][2]float64{{0, 0.5}})
	env := newTestEnv(t, f, nil)
	runDir, cache := t.TempDir(), t.TempDir()
	f.write(t, runDir)
	s := testSettings(cache)
	s.MinFreeBytes = 1 << 20
	st := newTestStage(s, testRegistry(t), env.store, nil)
	st.freeBytes = func(string) (uint64, error) { return 1 << 20, nil }
	_, err := runFetch(context.Background(), t, runDir, st, false)
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "short by") {
		t.Fatalf("err = %v, want a halt naming the shortfall", err)
	}
	// planned bytes + 1 MiB headroom − 1 MiB free = the planned bytes
	want := len(plannedKeys(t, f)["L000"]) * 10_000
	if !strings.Contains(err.Error(), "(short by") || !strings.Contains(err.Error(), "("+itoa(want)+" bytes))") {
		t.Errorf("shortfall not %d bytes: %v", want, err)
	}
	if n := env.srv.TotalRequests(); n != 0 {
		t.Errorf("%d requests before the disk check halted, want 0", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFetchRejectsBadKeys(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 30, spacing: 2.5, z0: 0, objSize: 100}, {n: 30, spacing: 2.5, z0: 0, objSize: 100}},
		[][2]float64{{0, 0.5}, {1, 0.5}})
	env := newTestEnv(t, f, nil)
	// Make series 0's middle instances point outside the cache.
	for i := range f.instances {
		in := &f.instances[i]
		if in.SeriesInstanceUID == "1.2.826.0.1.1" && in.ImagePositionPatient[2] > 30 && in.ImagePositionPatient[2] < 40 {
			in.CRDCInstanceUUID = "../../../../etc/evil"
			in.GCSURL = "gs://" + testBucket + "/" + in.CRDCSeriesUUID + "/../../evil.dcm"
		}
	}
	runDir := t.TempDir()
	base := t.TempDir()
	cache := filepath.Join(base, "a", "b", "c", "cache")
	f.write(t, runDir)
	c, err := runFetch(context.Background(), t, runDir, newTestStage(testSettings(cache), testRegistry(t), env.store, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.emitted(); !slices.Equal(got, []string{"L001"}) {
		t.Errorf("emitted %v, want L001", got)
	}
	if fl := failuresByItem(t, runDir)["L000"]; fl.ErrorClass != pipeline.ClassInput {
		t.Errorf("L000 failure %+v, want bad_input", fl)
	}
	// Nothing was written outside the cache, and the cache holds only whole objects.
	filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, cache+string(filepath.Separator)) {
			t.Errorf("file written outside the cache: %s", p)
		}
		return nil
	})
	if scanCache(t, cache, f.content, false) == 0 {
		t.Error("L001's objects are not in the cache")
	}
}

func TestFetchLocalSource(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 50, spacing: 2.5, z0: 0, objSize: 10}, {n: 50, spacing: 2.5, z0: 0, objSize: 10}},
		[][2]float64{{0, 0.5}, {1, 0.5}})
	dir := t.TempDir()
	// Series 1 misses one of the slices its crop needs.
	need := plannedKeys(t, f)["L001"]
	absent := need[len(need)/2]
	for i := range f.instances {
		in := &f.instances[i]
		key := keyOf(*in)
		in.LocalPath = filepath.Join(dir, in.SOPInstanceUID+".dcm")
		in.CRDCSeriesUUID, in.CRDCInstanceUUID, in.GCSURL = "", "", ""
		if key == absent {
			continue
		}
		if err := os.WriteFile(in.LocalPath, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runDir := t.TempDir()
	f.write(t, runDir)
	s := testSettings("")
	s.Source = SourceLocal
	c, err := runFetch(context.Background(), t, runDir, newTestStage(s, testRegistry(t), nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.emitted(); !slices.Equal(got, []string{"L000"}) {
		t.Errorf("emitted %v, want L000", got)
	}
	if fl := failuresByItem(t, runDir)["L001"]; fl.ErrorClass != pipeline.ClassNotFound {
		t.Errorf("L001 failure %+v, want not_found", fl)
	}
	if _, err := os.Stat(filepath.Join(runDir, "dicom")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source local created a cache: %v", err)
	}
}

// A lesion is handed on while other lesions' objects are still downloading.
func TestFetchStreamsLesionsEarly(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 40, spacing: 2.5, z0: 0, objSize: 1000}, {n: 40, spacing: 2.5, z0: 0, objSize: 1000}},
		[][2]float64{{0, 0.5}, {1, 0.5}})
	env := newTestEnv(t, f, nil)
	want := plannedKeys(t, f)
	env.srv.StallFor = 1500 * time.Millisecond
	env.srv.SetFault(want["L001"][0], gcptest.Fault{Seq: []gcptest.Action{gcptest.Stall}})
	runDir, cache := t.TempDir(), t.TempDir()
	f.write(t, runDir)
	s := testSettings(cache)
	s.ObjectTimeout = "10s"
	st := newTestStage(s, testRegistry(t), env.store, nil)
	c := &collector{}
	var firstAt time.Duration
	start := time.Now()
	var once sync.Once
	c.seen = func(id string) {
		once.Do(func() { firstAt = time.Since(start) })
		// Everything the lesion needs is in place when it arrives.
		for _, k := range want[id] {
			if _, err := os.Stat(filepath.Join(cache, k)); err != nil {
				t.Errorf("%s handed on before %s was cached", id, k)
			}
		}
	}
	r, err := pipeline.NewRunner([]pipeline.Stage{st, c}, pipeline.Options{RunDir: runDir, Items: tables.LesionItems(layout.New(runDir, pipeline.Shard{}).Lesions(), layout.New(runDir, pipeline.Shard{}).Instances())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if got := c.emitted(); !slices.Equal(got, []string{"L000", "L001"}) {
		t.Fatalf("emitted %v", got)
	}
	if firstAt > total/2 || total < 1500*time.Millisecond {
		t.Errorf("first lesion at %v of %v: not streamed", firstAt, total)
	}
}

// A cache that cannot be written is not the objects' fault: the run halts instead of failing
// every lesion.
func TestFetchHaltsOnCacheWriteError(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 40, spacing: 2.5, z0: 0, objSize: 100}}, [][2]float64{{0, 0.5}})
	env := newTestEnv(t, f, nil)
	runDir, cache := t.TempDir(), t.TempDir()
	f.write(t, runDir)
	if err := os.WriteFile(filepath.Join(cache, f.instances[0].CRDCSeriesUUID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runFetch(context.Background(), t, runDir, newTestStage(testSettings(cache), testRegistry(t), env.store, nil), false)
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "write DICOM cache") {
		t.Fatalf("err = %v, want a halt", err)
	}
	if fl := failuresByItem(t, runDir); len(fl) != 0 {
		t.Errorf("failures recorded for a local problem: %v", fl)
	}
}
