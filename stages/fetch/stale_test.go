package fetch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectome/pipeline"
)

// A shared cache holding what a killed process left: the next fetch removes the old temp
// files in the series it plans, and nothing else.
func TestFetchRemovesStaleTemps(t *testing.T) {
	f := buildFixture([]seriesSpec{{n: 60, spacing: 2.5, z0: 0, objSize: 3000}}, [][2]float64{{0, 0.5}})
	env := newTestEnv(t, f, nil)
	cache := t.TempDir()
	runDir := t.TempDir()
	f.write(t, runDir)
	if _, err := runFetch(context.Background(), t, runDir, newTestStage(testSettings(cache), testRegistry(t), env.store, nil), false); err != nil {
		t.Fatal(err)
	}
	finals := scanCache(t, cache, f.content, false)
	if finals == 0 {
		t.Fatal("first run cached nothing")
	}

	seriesDir := filepath.Join(cache, f.instances[0].CRDCSeriesUUID)
	otherDir := filepath.Join(cache, "99999999-9999-9999-9999-999999999999") // a series this plan does not touch
	old := time.Now().Add(-2 * time.Hour)
	plant := func(dir, name string, mtime time.Time) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := plant(seriesDir, ".aaaaaaaa-0000-0000-0000-000000000001.dcm.tmp-1234567", old)
	stale2 := plant(seriesDir, ".aaaaaaaa-0000-0000-0000-000000000002.dcm.tmp-7654321", old)
	fresh := plant(seriesDir, ".aaaaaaaa-0000-0000-0000-000000000003.dcm.tmp-1111111", time.Now().Add(-time.Minute))
	outside := plant(otherDir, ".aaaaaaaa-0000-0000-0000-000000000004.dcm.tmp-2222222", old)
	// Final files are never temp files, however old.
	entries, err := os.ReadDir(seriesDir)
	if err != nil {
		t.Fatal(err)
	}
	var finalPaths []string
	for _, e := range entries {
		if p := filepath.Join(seriesDir, e.Name()); p != stale && p != stale2 && p != fresh {
			finalPaths = append(finalPaths, p)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(finalPaths) != finals {
		t.Fatalf("%d final files in the series directory, want %d", len(finalPaths), finals)
	}

	runDir2 := t.TempDir()
	f.write(t, runDir2)
	env.srv.ResetCounts()
	c, err := runFetch(context.Background(), t, runDir2, newTestStage(testSettings(cache), testRegistry(t), env.store, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, stale2} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("stale temp %s still there (stat err %v)", filepath.Base(p), err)
		}
	}
	for _, p := range append([]string{fresh, outside}, finalPaths...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if n := scanCache(t, cache, f.content, true); n != finals {
		t.Errorf("%d verified final files after the second run, want %d", n, finals)
	}
	if n := env.srv.TotalRequests(); n != 0 || len(c.emitted()) != 1 {
		t.Errorf("second run: %d requests, %d lesions; want 0 and 1", n, len(c.emitted()))
	}
	m, ok, err := pipeline.ReadMarker(runDir2, "fetch", pipeline.Shard{})
	if err != nil || !ok {
		t.Fatalf("marker: %v %v", ok, err)
	}
	if m.Counts["stale_temp_removed"] != 2 {
		t.Errorf("stale_temp_removed = %d, want 2 (counts %v)", m.Counts["stale_temp_removed"], m.Counts)
	}
}
