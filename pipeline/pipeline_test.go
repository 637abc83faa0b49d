package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---- test stages: a tiny three-stage pipeline over integers -------------------------------

// listStage ("cohort") writes the item list 1..N.
type listStage struct {
	N    int
	runs *atomic.Int32
}

func (s *listStage) Name() string    { return StageCohort }
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

func readItems(runDir string) ([]Item, error) {
	b, err := os.ReadFile(filepath.Join(runDir, StageCohort, "items.txt"))
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, l := range strings.Fields(string(b)) {
		out = append(out, Item{ID: l})
	}
	return out, nil
}

// squareStage ("fetch", streaming) writes one file per item with its value × Factor, marks it
// in a ledger and emits it. Hooks let tests fail, halt, slow or stop it.
type squareStage struct {
	Factor    int
	runs      *atomic.Int32
	processed *atomic.Int32
	failItem  string
	haltItem  string
	onItem    func(n int32) // called after each item is done
}

func (s *squareStage) Name() string    { return StageFetch }
func (s *squareStage) Version() string { return "1" }
func (s *squareStage) Settings() any   { return map[string]int{"factor": s.Factor} }
func (s *squareStage) Streams() bool   { return true }
func (s *squareStage) Run(ctx context.Context, sc *Context) error {
	s.runs.Add(1)
	all, err := readItems(sc.RunDir)
	if err != nil {
		return Haltf("read items: %w", err)
	}
	led, err := OpenLedger(filepath.Join(sc.Dir, "done.txt"))
	if err != nil {
		return err
	}
	defer led.Close()
	bar := sc.Progress(int64(len(all)))
	for it := range sc.Items(ctx, all) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if led.Done(it.ID) {
			sc.Count("skipped", 1)
			if err := sc.Emit(ctx, it); err != nil {
				return err
			}
			continue
		}
		switch it.ID {
		case s.failItem:
			sc.Fail(it.ID, Itemf(ClassInput, it.ID, "item %s is bad", it.ID))
			continue
		case s.haltItem:
			return Haltf("item %s: the service is gone", it.ID)
		}
		v, _ := strconv.Atoi(it.ID)
		if err := os.WriteFile(filepath.Join(sc.Dir, it.ID+".txt"), []byte(strconv.Itoa(v*v*s.Factor)), 0o644); err != nil {
			return err
		}
		if err := led.Mark(it.ID); err != nil {
			return err
		}
		sc.Count("done", 1)
		bar.Add(1)
		n := s.processed.Add(1)
		if err := sc.Emit(ctx, it); err != nil {
			return err
		}
		if s.onItem != nil {
			s.onItem(n)
		}
	}
	return nil
}

// sumStage ("preprocess", streaming) collects the items it receives and writes them sorted.
type sumStage struct {
	runs *atomic.Int32
}

func (s *sumStage) Name() string    { return StagePreprocess }
func (s *sumStage) Version() string { return "1" }
func (s *sumStage) Settings() any   { return struct{}{} }
func (s *sumStage) Streams() bool   { return true }
func (s *sumStage) Run(ctx context.Context, sc *Context) error {
	s.runs.Add(1)
	all, err := readItems(sc.RunDir)
	if err != nil {
		return err
	}
	var lines []string
	for it := range sc.Items(ctx, all) {
		b, err := os.ReadFile(filepath.Join(sc.RunDir, StageFetch, it.ID+".txt"))
		if err != nil {
			continue // failed upstream
		}
		lines = append(lines, it.ID+"="+string(b))
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
	r, err := NewRunner(p.stages(), opt)
	if err != nil {
		return nil, err, ExitCode(nil, err)
	}
	sum, err := r.Run(ctx)
	return sum, err, ExitCode(sum, err)
}

func result(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, StagePreprocess, "result.txt"))
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
	for _, st := range []string{StageCohort, StageFetch, StagePreprocess} {
		m, ok, err := ReadMarker(dir, st)
		if err != nil || !ok {
			t.Fatalf("marker of %s: ok=%v err=%v", st, ok, err)
		}
		if m.ConfigHash == "" || m.StageVersion != "1" {
			t.Errorf("marker of %s: %+v", st, m)
		}
	}
	if m, _, _ := ReadMarker(dir, StageFetch); m.Counts["done"] != 20 {
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
	if len(fs) != 1 || fs[0].Stage != StageFetch || fs[0].ItemID != "4" || fs[0].ErrorClass != ClassInput ||
		!strings.Contains(fs[0].Message, "item 4 is bad") {
		t.Fatalf("failures %+v", fs)
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
	if _, ok, _ := ReadMarker(dir, StageFetch); ok {
		t.Error("halted stage has a completion marker")
	}
	if _, ok, _ := ReadMarker(dir, StagePreprocess); ok {
		t.Error("the stage downstream of a halt has a completion marker")
	}
	status := map[string]string{}
	for _, s := range sum.Stages {
		status[s.Name] = s.Status
	}
	if status[StageFetch] != "failed" || status[StagePreprocess] != "interrupted" || status[StageCohort] != "done" {
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
	if _, ok, _ := ReadMarker(dir, StageFetch); ok {
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
	_, err, code := run(t, context.Background(), p, dir, Options{From: StageFetch})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "stage cohort has not completed") {
		t.Fatalf("err %v code %d", err, code)
	}
	if _, err, _ := run(t, context.Background(), p, dir, Options{Only: StageCohort}); err != nil {
		t.Fatal(err)
	}
	if _, err, code := run(t, context.Background(), p, dir, Options{From: StageFetch}); err != nil || code != 0 {
		t.Fatalf("--from fetch after cohort: %v %d", err, code)
	}
	p.list.N = 6
	_, err, _ = run(t, context.Background(), p, dir, Options{Only: StagePreprocess})
	if err == nil || !strings.Contains(err.Error(), "ran with a different config") {
		t.Fatalf("stale upstream accepted: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	p := newTestPipeline(1, 1)
	for _, opt := range []Options{{From: "nope"}, {Only: "fetch", From: "cohort"}, {From: StagePreprocess, To: StageCohort}} {
		opt.RunDir = t.TempDir()
		_, err := NewRunner(p.stages(), opt)
		if ExitCode(nil, err) != 2 {
			t.Errorf("%+v: err %v, want a usage error", opt, err)
		}
	}
}

// ---- flow tests -------------------------------------------------------------------------

func TestFlowCancellationReturnsPromptly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f, _ := NewFlow(ctx, func(string, error) {})
	items := make([]int, 1_000_000)
	src := Source(f, items, 4)
	sq := Pipe(f, src, Step[int, int]{Workers: 4, Buffer: 4, Do: func(ctx context.Context, v int, emit func(int) error) error {
		time.Sleep(100 * time.Microsecond)
		return emit(v)
	}})
	var seen atomic.Int32
	Sink(f, sq, func(int) error {
		if seen.Add(1) == 100 {
			cancel()
		}
		return nil
	})
	start := time.Now()
	err := f.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancellation took %v", el)
	}
	// goleak in TestMain checks that no goroutine is left.
}

func TestFlowBackpressureBoundsInFlight(t *testing.T) {
	f, _ := NewFlow(context.Background(), func(string, error) {})
	const n, buffer, workers = 300, 3, 2
	var produced, consumed atomic.Int64
	var maxGap atomic.Int64
	items := make([]int, n)
	src := Source(f, items, buffer)
	out := Pipe(f, src, Step[int, int]{Workers: workers, Buffer: buffer, Do: func(ctx context.Context, v int, emit func(int) error) error {
		produced.Add(1)
		return emit(v)
	}})
	Sink(f, out, func(int) error {
		time.Sleep(200 * time.Microsecond) // the slow stage
		c := consumed.Add(1)
		if gap := produced.Load() - c; gap > maxGap.Load() {
			maxGap.Store(gap)
		}
		return nil
	})
	if err := f.Wait(); err != nil {
		t.Fatal(err)
	}
	// In flight past the slow stage: its output buffer plus one value held by each worker.
	if bound := int64(buffer + workers + 1); maxGap.Load() > bound {
		t.Fatalf("%d items produced ahead of the slow consumer, bound %d", maxGap.Load(), bound)
	}
	if consumed.Load() != n {
		t.Fatalf("consumed %d", consumed.Load())
	}
}

func TestFlowItemErrorsAreRecordedHaltStops(t *testing.T) {
	var mu sync.Mutex
	var failed []string
	f, _ := NewFlow(context.Background(), func(id string, err error) {
		mu.Lock()
		failed = append(failed, id)
		mu.Unlock()
	})
	src := Source(f, []int{1, 2, 3, 4, 5}, 0)
	out := Pipe(f, src, Step[int, int]{Workers: 1, ID: strconv.Itoa, Do: func(ctx context.Context, v int, emit func(int) error) error {
		if v == 2 {
			return Itemf(ClassInput, "", "bad")
		}
		return emit(v)
	}})
	var got []int
	Sink(f, out, func(v int) error { got = append(got, v); return nil })
	if err := f.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || len(failed) != 1 || failed[0] != "2" {
		t.Fatalf("got %v failed %v", got, failed)
	}

	f, _ = NewFlow(context.Background(), func(string, error) {})
	src = Source(f, make([]int, 1000), 0)
	out = Pipe(f, src, Step[int, int]{Workers: 2, Do: func(ctx context.Context, v int, emit func(int) error) error {
		return Haltf("GPU init failed")
	}})
	Sink(f, out, func(int) error { return nil })
	if err := f.Wait(); !IsHalt(err) {
		t.Fatalf("err %v, want the halt", err)
	}
}

func TestLedgerDropsCutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger")
	if err := os.WriteFile(path, []byte("a\nb\nc-cut"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Done("a") || !l.Done("b") || l.Done("c-cut") || l.Len() != 2 {
		t.Fatalf("ledger state wrong: len %d", l.Len())
	}
	if err := l.Mark("c"); err != nil {
		t.Fatal(err)
	}
	if err := l.Mark("bad\nid"); err == nil {
		t.Error("multi-line id accepted")
	}
	l.Close()
	b, _ := os.ReadFile(path)
	if string(b) != "a\nb\nc\n" {
		t.Fatalf("ledger file %q", b)
	}
}

func TestProgressLogsOnNonTerminal(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := NewProgress(nil, false, log, 20*time.Millisecond)
	b := p.Bar("embed", 10)
	b.Add(4)
	time.Sleep(80 * time.Millisecond)
	b.finish(true)
	p.Close()
	out := buf.String()
	if !strings.Contains(out, "stage=embed done=4 total=10") || !strings.Contains(out, "eta=") {
		t.Fatalf("progress lines:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	if code := ExitCode(sum, err); code != 1 || !strings.Contains(err.Error(), "stage preprocess (checked before the run): no CUDA provider") {
		t.Fatalf("exit %d, err %v", code, err)
	}
	if p.runs[0].Load() != 0 || p.runs[1].Load() != 0 {
		t.Fatalf("stages ran before the failed preflight: cohort %d, fetch %d", p.runs[0].Load(), p.runs[1].Load())
	}
}
