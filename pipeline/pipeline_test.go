package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectome/internal/atomicfile"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---- test stages: a tiny three-stage pipeline over integers -------------------------------

// listStage writes the item list 1..N.
type listStage struct {
	N    int
	runs *atomic.Int32
}

func (s *listStage) Name() string    { return "list" }
func (s *listStage) Version() string { return "1" }
func (s *listStage) Settings() any   { return map[string]int{"n": s.N} }
func (s *listStage) Run(ctx context.Context, sc *Context) error {
	s.runs.Add(1)
	var b strings.Builder
	for i := 1; i <= s.N; i++ {
		fmt.Fprintln(&b, i)
	}
	sc.Count("items", int64(s.N))
	return os.WriteFile(filepath.Join(sc.Dir, "items.txt"), []byte(b.String()), 0o644)
}

// itemSource lists the items the list stage wrote: the runner's ItemSource.
func itemSource(runDir string) ItemSource {
	return func(context.Context) ([]Item, error) {
		b, err := os.ReadFile(filepath.Join(runDir, "list", "items.txt"))
		if err != nil {
			return nil, err
		}
		var out []Item
		for _, l := range strings.Fields(string(b)) {
			out = append(out, Item{ID: l, Payload: "payload of " + l})
		}
		return out, nil
	}
}

// squareStage (streaming) writes one file per item with its value × Factor and hands it on;
// on resume an item whose file exists is skipped. Hooks let tests fail, halt, slow or stop it.
type squareStage struct {
	Factor    int
	runs      *atomic.Int32
	processed *atomic.Int32
	failItem  string
	haltItem  string
	onItem    func(n int32) // called after each item is done
}

func (s *squareStage) Name() string    { return "square" }
func (s *squareStage) Version() string { return "1" }
func (s *squareStage) Settings() any   { return map[string]int{"factor": s.Factor} }
func (s *squareStage) Streams() bool   { return true }
func (s *squareStage) Run(ctx context.Context, sc *Context) error {
	s.runs.Add(1)
	return sc.Each(ctx, 2, func(ctx context.Context, it Item) error {
		if it.Payload != "payload of "+it.ID {
			return Haltf("item %s arrived with payload %v", it.ID, it.Payload)
		}
		path := filepath.Join(sc.Dir, it.ID+".txt")
		if _, err := os.Stat(path); err == nil && sc.Resume {
			sc.Count("skipped", 1)
			return nil
		}
		switch it.ID {
		case s.failItem:
			return Itemf(ClassInput, it.ID, "item %s is bad", it.ID)
		case s.haltItem:
			return Haltf("item %s: the service is gone", it.ID)
		}
		v, _ := strconv.Atoi(it.ID)
		if err := atomicfile.WriteBytes(path, []byte(strconv.Itoa(v*v*s.Factor))); err != nil {
			return err
		}
		sc.Count("done", 1)
		n := s.processed.Add(1)
		if s.onItem != nil {
			s.onItem(n)
		}
		return nil
	})
}

// sumStage (streaming) collects the items it receives and writes them sorted.
type sumStage struct {
	runs *atomic.Int32
}

func (s *sumStage) Name() string    { return "sum" }
func (s *sumStage) Version() string { return "1" }
func (s *sumStage) Settings() any   { return struct{}{} }
func (s *sumStage) Streams() bool   { return true }
func (s *sumStage) Run(ctx context.Context, sc *Context) error {
	s.runs.Add(1)
	var mu sync.Mutex
	var lines []string
	err := sc.Each(ctx, 1, func(ctx context.Context, it Item) error {
		b, err := os.ReadFile(filepath.Join(sc.RunDir, "square", it.ID+".txt"))
		if err != nil {
			return nil // failed upstream
		}
		mu.Lock()
		lines = append(lines, it.ID+"="+string(b))
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(lines)
	return os.WriteFile(filepath.Join(sc.Dir, "result.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

type testPipeline struct {
	list   *listStage
	square *squareStage
	sum    *sumStage
	runs   [3]atomic.Int32
	proc   atomic.Int32
}

func newTestPipeline(n, factor int) *testPipeline {
	p := &testPipeline{}
	p.list = &listStage{N: n, runs: &p.runs[0]}
	p.square = &squareStage{Factor: factor, runs: &p.runs[1], processed: &p.proc}
	p.sum = &sumStage{runs: &p.runs[2]}
	return p
}

func (p *testPipeline) stages() []Stage { return []Stage{p.list, p.square, p.sum} }

func run(t *testing.T, ctx context.Context, p *testPipeline, dir string, opt Options) (*Summary, error, int) {
	t.Helper()
	opt.RunDir = dir
	opt.Items = itemSource(dir)
	r, err := NewRunner(p.stages(), opt)
	if err != nil {
		return nil, err, ExitCode(nil, err)
	}
	sum, err := r.Run(ctx)
	return sum, err, ExitCode(sum, err)
}

func result(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sum", "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---- engine tests ---------------------------------------------------------------------------

func TestRunAllStagesSucceeds(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(20, 1)
	sum, err, code := run(t, context.Background(), p, dir, Options{})
	if err != nil || code != 0 {
		t.Fatalf("err %v code %d", err, code)
	}
	if got := strings.Count(result(t, dir), "\n"); got != 20 {
		t.Fatalf("%d result rows, want 20", got)
	}
	for _, st := range []string{"list", "square", "sum"} {
		m, ok, err := ReadMarker(dir, st, Shard{})
		if err != nil || !ok {
			t.Fatalf("marker of %s: ok=%v err=%v", st, ok, err)
		}
		if m.ConfigHash == "" || m.StageVersion != "1" {
			t.Errorf("marker of %s: %+v", st, m)
		}
	}
	if m, _, _ := ReadMarker(dir, "square", Shard{}); m.Counts["done"] != 20 {
		t.Errorf("fetch counts %v", m.Counts)
	}
	if sum.Failures != 0 {
		t.Errorf("failures %d", sum.Failures)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Error(err)
	}
}

func TestItemErrorIsRecordedAndRunFinishesWithExit3(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(10, 1)
	p.square.failItem = "4"
	_, err, code := run(t, context.Background(), p, dir, Options{})
	if err != nil || code != 3 {
		t.Fatalf("err %v code %d, want nil and 3", err, code)
	}
	if got := strings.Count(result(t, dir), "\n"); got != 9 {
		t.Errorf("%d result rows, want 9 (one item failed)", got)
	}
	fs, err := ReadFailures(filepath.Join(dir, "failures.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Stage != "square" || fs[0].ItemID != "4" || fs[0].ErrorClass != ClassInput ||
		!strings.Contains(fs[0].Message, "item 4 is bad") {
		t.Fatalf("failures %+v", fs)
	}
	// its Parquet copy, for notebooks and DuckDB, holds the same row
	if items := parquetColumn(t, filepath.Join(dir, "failures.parquet"), "item_id"); !slices.Equal(items, []string{"4"}) {
		t.Errorf("failures.parquet item_id %v, want [4]", items)
	}
	// A plain resume keeps the completed stage and its failure; --retry-failed retries just
	// the failed item, and once it succeeds the failure is gone.
	p.square.failItem = ""
	if _, err, code = run(t, context.Background(), p, dir, Options{Resume: true}); err != nil || code != 3 {
		t.Fatalf("plain resume: err %v code %d, want the recorded failure kept", err, code)
	}
	before := p.proc.Load()
	_, err, code = run(t, context.Background(), p, dir, Options{Resume: true, RetryFailed: true})
	if p.proc.Load()-before != 1 {
		t.Errorf("retry processed %d items, want only the failed one", p.proc.Load()-before)
	}
	if err != nil || code != 0 {
		t.Fatalf("resume: err %v code %d", err, code)
	}
	if fs, _ := ReadFailures(filepath.Join(dir, "failures.arrow")); len(fs) != 0 {
		t.Fatalf("failures after successful retry: %+v", fs)
	}
}

func TestHaltStopsEveryStageWithExit1(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(50, 1)
	p.square.haltItem = "7"
	sum, err, code := run(t, context.Background(), p, dir, Options{})
	if code != 1 || !IsHalt(err) || !strings.Contains(err.Error(), "the service is gone") {
		t.Fatalf("err %v code %d", err, code)
	}
	if _, ok, _ := ReadMarker(dir, "square", Shard{}); ok {
		t.Error("halted stage has a completion marker")
	}
	if _, ok, _ := ReadMarker(dir, "sum", Shard{}); ok {
		t.Error("the stage downstream of a halt has a completion marker")
	}
	status := map[string]string{}
	for _, s := range sum.Stages {
		status[s.Name] = s.Status
	}
	if status["square"] != "failed" || status["sum"] != "interrupted" || status["list"] != "done" {
		t.Errorf("statuses %v", status)
	}
}

func TestStoppedRunResumesToIdenticalOutput(t *testing.T) {
	ref := t.TempDir()
	if _, err, _ := run(t, context.Background(), newTestPipeline(40, 3), ref, Options{}); err != nil {
		t.Fatal(err)
	}
	want := result(t, ref)

	dir := t.TempDir()
	p := newTestPipeline(40, 3)
	ctx, cancel := context.WithCancelCause(context.Background())
	const k = 13
	p.square.onItem = func(n int32) {
		if n == k {
			cancel(errors.New("SIGINT"))
		}
	}
	_, err, code := run(t, ctx, p, dir, Options{})
	if !errors.Is(err, ErrInterrupted) || code != 1 {
		t.Fatalf("interrupted run: err %v code %d", err, code)
	}
	if _, ok, _ := ReadMarker(dir, "square", Shard{}); ok {
		t.Fatal("an interrupted stage has a completion marker")
	}
	p.square.onItem = nil
	before := p.proc.Load()
	if _, err, code := run(t, context.Background(), p, dir, Options{Resume: true}); err != nil || code != 0 {
		t.Fatalf("resume: %v %d", err, code)
	}
	if got := result(t, dir); got != want {
		t.Fatalf("resumed output differs:\n%s\nwant\n%s", got, want)
	}
	if redone := p.proc.Load() - before; redone != 40-before {
		t.Errorf("resume processed %d items, want %d (only the missing ones)", redone, 40-before)
	}
	if p.runs[0].Load() != 1 {
		t.Errorf("cohort ran %d times; it was complete and should have been skipped", p.runs[0].Load())
	}
}

// machineLocalSquare is the square stage with its output declared machine-local, as the
// fetch stage's DICOM cache is.
type machineLocalSquare struct{ *squareStage }

func (machineLocalSquare) MachineLocal() bool { return true }

// A complete machine-local stage runs again, before the stage after it, when that stage runs
// (a resumed run on a new machine); not when the run has nothing left to do, and a stage
// without the declaration stays skipped.
func TestMachineLocalStageRunsAgainBeforeItsReader(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprint("machine-local=", local), func(t *testing.T) {
			dir := t.TempDir()
			p := newTestPipeline(12, 2)
			stages := p.stages()
			if local {
				stages[1] = machineLocalSquare{p.square}
			}
			runStages := func(opt Options) *Summary {
				t.Helper()
				opt.RunDir, opt.Items = dir, itemSource(dir)
				r, err := NewRunner(stages, opt)
				if err != nil {
					t.Fatal(err)
				}
				sum, err := r.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return sum
			}
			runStages(Options{})
			want := result(t, dir)
			runStages(Options{Resume: true})
			if n := p.runs[1].Load(); n != 1 {
				t.Fatalf("square ran %d times with nothing left to do, want 1", n)
			}
			if err := os.Remove(filepath.Join(dir, "sum", MarkerFile)); err != nil {
				t.Fatal(err)
			}
			sum := runStages(Options{Resume: true})
			wantRuns, wantStatus := int32(1), "skipped"
			if local {
				wantRuns, wantStatus = 2, "done"
			}
			if n, st := p.runs[1].Load(), sum.Stages[1].Status; n != wantRuns || st != wantStatus {
				t.Errorf("square ran %d times, status %s; want %d, %s", n, st, wantRuns, wantStatus)
			}
			if p.runs[0].Load() != 1 || p.runs[2].Load() != 2 {
				t.Errorf("list ran %d times, sum %d: want 1 and 2", p.runs[0].Load(), p.runs[2].Load())
			}
			if got := result(t, dir); got != want {
				t.Errorf("result after the rerun:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestConfigChangeRerunsStageAndDownstreamOnly(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(10, 2)
	if _, err, _ := run(t, context.Background(), p, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	// Same config: everything is skipped.
	if _, err, _ := run(t, context.Background(), p, dir, Options{Resume: true}); err != nil {
		t.Fatal(err)
	}
	if p.runs[0].Load() != 1 || p.runs[1].Load() != 1 || p.runs[2].Load() != 1 {
		t.Fatalf("unchanged config re-ran stages: %d %d %d", p.runs[0].Load(), p.runs[1].Load(), p.runs[2].Load())
	}
	p.square.Factor = 5
	procBefore := p.proc.Load()
	if _, err, _ := run(t, context.Background(), p, dir, Options{Resume: true}); err != nil {
		t.Fatal(err)
	}
	if p.runs[0].Load() != 1 {
		t.Error("upstream stage re-ran after a downstream config change")
	}
	if p.runs[1].Load() != 2 || p.runs[2].Load() != 2 {
		t.Errorf("changed stage and downstream runs: %d %d, want 2 2", p.runs[1].Load(), p.runs[2].Load())
	}
	if p.proc.Load()-procBefore != 10 {
		t.Errorf("changed stage redid %d items, want all 10 (old items were made with the old config)", p.proc.Load()-procBefore)
	}
	if !strings.Contains(result(t, dir), "3=45") {
		t.Errorf("result not recomputed with the new factor: %s", result(t, dir))
	}
}

func TestFromRequiresCompleteUpstream(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(5, 1)
	_, err, code := run(t, context.Background(), p, dir, Options{From: "square"})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "stage list has not completed") {
		t.Fatalf("err %v code %d", err, code)
	}
	if _, err, _ := run(t, context.Background(), p, dir, Options{Only: "list"}); err != nil {
		t.Fatal(err)
	}
	if _, err, code := run(t, context.Background(), p, dir, Options{From: "square"}); err != nil || code != 0 {
		t.Fatalf("--from fetch after cohort: %v %d", err, code)
	}
	p.list.N = 6
	_, err, _ = run(t, context.Background(), p, dir, Options{Only: "sum"})
	if err == nil || !strings.Contains(err.Error(), "ran with a different config") {
		t.Fatalf("stale upstream accepted: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	p := newTestPipeline(1, 1)
	for _, opt := range []Options{{From: "nope"}, {Only: "fetch", From: "cohort"}, {From: "sum", To: "list"}} {
		opt.RunDir = t.TempDir()
		_, err := NewRunner(p.stages(), opt)
		if ExitCode(nil, err) != 2 {
			t.Errorf("%+v: err %v, want a usage error", opt, err)
		}
	}
}

// ---- Each: the streaming stages' worker pool ----------------------------------------------

func intItems(n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{ID: strconv.Itoa(i + 1)}
	}
	return items
}

func testContext(t *testing.T, cfg ContextConfig) *Context {
	t.Helper()
	cfg.Stage, cfg.RunDir = "test", t.TempDir()
	sc, err := NewContext(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestEachCancellationReturnsPromptly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sc := testContext(t, ContextConfig{Items: intItems(1_000_000)})
	defer sc.Close()
	var seen atomic.Int32
	start := time.Now()
	err := sc.Each(ctx, 4, func(ctx context.Context, it Item) error {
		time.Sleep(100 * time.Microsecond)
		if seen.Add(1) == 100 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancellation took %v", el)
	}
	// goleak in TestMain checks that no goroutine is left.
}

func TestEachBackpressureBoundsInFlight(t *testing.T) {
	const n, buffer, workers = 300, 3, 2
	out := make(chan Item, buffer)
	sc := testContext(t, ContextConfig{Items: intItems(n), Out: out})
	defer sc.Close()
	var produced, consumed atomic.Int64
	var maxGap atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range out {
			time.Sleep(200 * time.Microsecond) // the slow stage downstream
			c := consumed.Add(1)
			if gap := produced.Load() - c; gap > maxGap.Load() {
				maxGap.Store(gap)
			}
		}
	}()
	err := sc.Each(context.Background(), workers, func(ctx context.Context, it Item) error {
		produced.Add(1)
		return nil
	})
	close(out)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	// In flight past the slow stage: its input buffer plus one item held by each worker.
	if bound := int64(buffer + workers + 1); maxGap.Load() > bound {
		t.Fatalf("%d items produced ahead of the slow consumer, bound %d", maxGap.Load(), bound)
	}
	if consumed.Load() != n {
		t.Fatalf("consumed %d", consumed.Load())
	}
}

func TestEachRecordsItemErrorsAndStopsOnHalt(t *testing.T) {
	out := make(chan Item, 10)
	sc := testContext(t, ContextConfig{Items: intItems(5), Out: out})
	err := sc.Each(context.Background(), 1, func(ctx context.Context, it Item) error {
		if it.ID == "2" {
			return Itemf(ClassInput, it.ID, "bad")
		}
		return nil
	})
	close(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for it := range out {
		got = append(got, it.ID)
	}
	fs, err := sc.Failures()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "1,3,4,5" || len(fs) != 1 || fs[0].ItemID != "2" || fs[0].ErrorClass != ClassInput {
		t.Fatalf("handed on %v, failures %+v", got, fs)
	}
	if sc.Counts()["failed"] != 1 {
		t.Fatalf("counts %v", sc.Counts())
	}

	sc = testContext(t, ContextConfig{Items: intItems(1000)})
	defer sc.Close()
	err = sc.Each(context.Background(), 2, func(ctx context.Context, it Item) error {
		return Haltf("GPU init failed")
	})
	if !IsHalt(err) {
		t.Fatalf("err %v, want the halt", err)
	}
}

// preflightStage wraps a stage with a Preflight that fails.
type preflightStage struct {
	*sumStage
	err error
}

func (p *preflightStage) Preflight(context.Context) error { return p.err }

func TestPreflightFailureStopsBeforeAnyStage(t *testing.T) {
	dir := t.TempDir()
	p := newTestPipeline(5, 1)
	stages := []Stage{p.list, p.square, &preflightStage{sumStage: p.sum, err: errors.New("no CUDA provider")}}
	r, err := NewRunner(stages, Options{RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background())
	if code := ExitCode(sum, err); code != 1 || !strings.Contains(err.Error(), "stage sum (checked before the run): no CUDA provider") {
		t.Fatalf("exit %d, err %v", code, err)
	}
	if p.runs[0].Load() != 0 || p.runs[1].Load() != 0 {
		t.Fatalf("stages ran before the failed preflight: cohort %d, fetch %d", p.runs[0].Load(), p.runs[1].Load())
	}
}

// parquetColumn reads one string column of a Parquet file.
func parquetColumn(t *testing.T, path, column string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tbl, err := pqarrow.ReadTable(context.Background(), f, nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer tbl.Release()
	idx := tbl.Schema().FieldIndices(column)
	if len(idx) != 1 {
		t.Fatalf("%s has no column %s", path, column)
	}
	var out []string
	for _, c := range tbl.Column(idx[0]).Data().Chunks() {
		s := c.(*array.String)
		for i := range s.Len() {
			out = append(out, s.Value(i))
		}
	}
	return out
}
