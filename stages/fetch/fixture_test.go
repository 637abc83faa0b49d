package fetch

import (
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"connectome/internal/atomicfile"
	"connectome/internal/gcp"
	"connectome/internal/gcp/gcptest"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/pipeline"
)

// The bucket is deliberately not IDC's: the stage must take it from gcs_url.
const testBucket = "test-idc-mirror"

// testModels: two crops of the registry's kinds, a 48 mm cube at 1 mm and CT-CLIP's
// 60 voxels at 0.75 mm along S.
const testModels = `obtain: the tests write these generated encoders
models:
  - name: cube48
    onnx: a.onnx
    input: input
    output: embedding
    embedding_dim: 8
    preprocess: {axcodes: SPL, pixdim: [1, 1, 1], roi: [48, 48, 48], hu_range: [-1024, 2048], clamp: [0, 1]}
  - name: clip60
    onnx: b.onnx
    input: input
    output: embedding
    embedding_dim: 8
    preprocess: {axcodes: SLP, pixdim: [1.5, 0.75, 0.75], roi: [60, 60, 60], hu_range: [-1000, 1000], clamp: [-1, 1]}
`

func testRegistry(t testing.TB) *models.Registry {
	t.Helper()
	reg, err := models.Parse("models.yaml", []byte(testModels))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func uuidFor(kind string, a, b int) string {
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", crc32.ChecksumIEEE([]byte(kind)), a, b%4096, a%4096, a*100000+b)
}

// seriesSpec describes one synthetic axial series.
type seriesSpec struct {
	n       int
	spacing float64 // mm between slices
	z0      float64
	objSize int // bytes per object
}

type fixture struct {
	lesions   []tables.Lesion
	instances []tables.Instance
	content   map[string][]byte // object key -> bytes
}

// buildFixture makes one series per spec and lesions at the given (series, slice position
// fraction) seeds. Instances are listed in a shuffled order, as a query would return them.
func buildFixture(specs []seriesSpec, seeds [][2]float64) *fixture {
	f := &fixture{content: map[string][]byte{}}
	r := rand.New(rand.NewPCG(1, 2))
	for si, sp := range specs {
		suid := fmt.Sprintf("1.2.826.0.1.%d", si+1)
		var rows []tables.Instance
		for k := 0; k < sp.n; k++ {
			su, iu := uuidFor("series", si, 0), uuidFor("inst", si, k)
			body := make([]byte, sp.objSize)
			for i := range body {
				body[i] = byte(r.UintN(256))
			}
			key := su + "/" + iu + ".dcm"
			f.content[key] = body
			rows = append(rows, tables.Instance{
				SeriesInstanceUID: suid, SOPInstanceUID: fmt.Sprintf("%s.%d", suid, k+1),
				CRDCSeriesUUID: su, CRDCInstanceUUID: iu,
				GCSURL:       "gs://" + testBucket + "/" + key,
				InstanceSize: int64(sp.objSize), InstanceNumber: int32(sp.n - k),
				ImagePositionPatient:    [3]float64{-180, -200, sp.z0 + float64(k)*sp.spacing},
				ImageOrientationPatient: [6]float64{1, 0, 0, 0, 1, 0},
				PixelSpacing:            [2]float64{0.703125, 0.703125}, Rows: 512, Columns: 512,
			})
		}
		r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		f.instances = append(f.instances, rows...)
	}
	for i, s := range seeds {
		sp := specs[int(s[0])]
		z := sp.z0 + s[1]*float64(sp.n-1)*sp.spacing
		f.lesions = append(f.lesions, tables.Lesion{
			LesionID: fmt.Sprintf("L%03d", i), PatientID: fmt.Sprintf("P%03d", i),
			SeriesInstanceUID: fmt.Sprintf("1.2.826.0.1.%d", int(s[0])+1),
			CenterMM:          [3]float64{-10.3 + float64(i), 5.7, z + 0.37}, NBoxes: 1, StudyYear: 0,
		})
	}
	return f
}

func (f *fixture) write(t testing.TB, runDir string) {
	t.Helper()
	md := tables.Metadata("test", "idc_test", "", nil)
	if err := tables.WriteLesions(layout.New(runDir, pipeline.Shard{}).Lesions(), f.lesions, md); err != nil {
		t.Fatal(err)
	}
	if err := tables.WriteInstances(layout.New(runDir, pipeline.Shard{}).Instances(), f.instances, md); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) objects(skip map[string]bool) []fakestorage.Object {
	var out []fakestorage.Object
	for k, v := range f.content {
		if skip[k] {
			continue
		}
		out = append(out, fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: testBucket, Name: k}, Content: v})
	}
	return out
}

func keyOf(in tables.Instance) string { return in.CRDCSeriesUUID + "/" + in.CRDCInstanceUUID + ".dcm" }

// collector stands in for preprocess: it records the lesions fetch hands on, and checks each
// one's planned files are complete at that moment.
type collector struct {
	mu   sync.Mutex
	ids  []string
	seen func(id string)
}

func (c *collector) Name() string    { return layout.Preprocess }
func (c *collector) Version() string { return "test" }
func (c *collector) Settings() any   { return nil }
func (c *collector) Streams() bool   { return true }
func (c *collector) emitted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}
func (c *collector) Run(ctx context.Context, sc *pipeline.Context) error {
	return sc.Each(ctx, 1, func(ctx context.Context, it pipeline.Item) error {
		if c.seen != nil {
			c.seen(it.ID)
		}
		c.mu.Lock()
		c.ids = append(c.ids, it.ID)
		c.mu.Unlock()
		return nil
	})
}

// testEnv is a fake GCS loaded with a fixture and a client on it.
type testEnv struct {
	srv   *gcptest.Server
	store gcp.ObjectStore
}

func newTestEnv(t testing.TB, f *fixture, skip map[string]bool) *testEnv {
	t.Helper()
	srv, err := gcptest.New(f.objects(skip))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store, err := NewGCSClient(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &testEnv{srv: srv, store: store}
}

func testSettings(cacheDir string) Settings {
	s := DefaultSettings()
	s.CacheDir = cacheDir
	s.Concurrency = 8
	s.Retries = 3
	// generous: a loaded test machine must not turn slow answers into retries
	s.ObjectTimeout = "30s"
	s.MinFreeBytes = 0
	return s
}

func newTestStage(s Settings, reg *models.Registry, store gcp.ObjectStore, pl SlicePlanner) *Stage {
	st := New(s, reg, store, pl)
	st.backoffBase, st.backoffMax = time.Millisecond, 10*time.Millisecond
	return st
}

// runFetch runs fetch and a collector through the real engine.
func runFetch(ctx context.Context, t testing.TB, runDir string, st *Stage, resume bool) (*collector, error) {
	t.Helper()
	c := &collector{}
	r, err := pipeline.NewRunner([]pipeline.Stage{st, c}, pipeline.Options{RunDir: runDir, Resume: resume, Items: tables.LesionItems(layout.New(runDir, pipeline.Shard{}).Lesions(), layout.New(runDir, pipeline.Shard{}).Instances())})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(ctx)
	return c, err
}

// scanCache checks every file under its final name in the cache against the object it
// should be, and that no temp file is left. It returns the number of final files.
func scanCache(t testing.TB, dir string, content map[string][]byte, allowTemp bool) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if atomicfile.IsTemp(d.Name()) || strings.Contains(d.Name(), ".tmp-") {
			if !allowTemp {
				t.Errorf("temp file left in cache: %s", p)
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		want, ok := content[filepath.ToSlash(rel)]
		got, rerr := os.ReadFile(p)
		if !ok || rerr != nil || string(got) != string(want) {
			t.Errorf("cache file %s is not its object (known %v, %d vs %d bytes, err %v)", rel, ok, len(got), len(want), rerr)
		}
		n++
		return nil
	})
	return n
}

func failuresByItem(t testing.TB, runDir string) map[string]pipeline.Failure {
	t.Helper()
	fs, err := pipeline.ReadFailures(filepath.Join(runDir, "failures.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]pipeline.Failure{}
	for _, f := range fs {
		out[f.ItemID] = f
	}
	return out
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }
