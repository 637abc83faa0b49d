// Package crashtest kills the demo pipeline with SIGKILL at seeded random points, in every
// stage, resumes it until it completes, and checks that the result is the same as an
// uninterrupted run's, with a local run directory and with a gs:// one on fake Cloud
// Storage (which lives in the test process and so outlives every killed child). After every
// kill it checks what a crash may leave: no file under a final name that is partial, and no
// marker whose outputs are not all there as it records them. `make crash-test` runs it;
// CRASH_SEED and CRASH_POINTS choose the seed and the number of kills per run directory kind.
package crashtest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"connectome/internal/atomicfile"
	"connectome/internal/demo"
	"connectome/internal/gcp/gcptest"
	"connectome/internal/layout"
	"connectome/internal/testenv"
	"connectome/models/onnxrt/onnxrttest"
	"connectome/pipeline"
)

// patients is the cohort's size: small, so that a run takes seconds.
const patients = 4

func TestMain(m *testing.M) {
	onnxrttest.UseRepoLibrary()
	os.Exit(m.Run())
}

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func TestKillAnywhereResumeSameTables(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test takes minutes (-short)")
	}
	env := onnxrttest.Open()
	env.Require(t)
	env.Close()
	seed := envInt(t, "CRASH_SEED", 18)
	points := int(envInt(t, "CRASH_POINTS", 30))
	t.Logf("CRASH_SEED=%d CRASH_POINTS=%d (kills per run directory kind)", seed, points)

	h := newHarness(t)
	ref := filepath.Join(h.tmp, "ref")
	refLog := h.runToEnd(t, []string{"--run-dir", ref}, nil)
	h.durations = stageDurations(refLog)
	t.Logf("uninterrupted run: stage durations %v", h.durations)
	want := localTables(t, ref)
	if len(want) < 10 {
		t.Fatalf("the reference run has only %d tables", len(want))
	}

	t.Run("local", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		h.crashRuns(t, rng, points, ref, func(chain int) runDir {
			return &localDir{path: filepath.Join(h.tmp, fmt.Sprintf("local-%d", chain))}
		}, want)
	})
	t.Run("gcs", func(t *testing.T) {
		srv, err := gcptest.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		srv.Fake.CreateBucket("crash")
		host := strings.TrimPrefix(srv.URL(), "http://")
		rng := rand.New(rand.NewPCG(uint64(seed), 2))
		h.crashRuns(t, rng, points, ref, func(chain int) runDir {
			return &bucketDir{srv: srv.Fake, host: host, prefix: fmt.Sprintf("run-%d", chain),
				work: filepath.Join(h.tmp, fmt.Sprintf("work-%d", chain))}
		}, want)
	})
}

// harness runs the demo binary.
type harness struct {
	bin, root, tmp string
	durations      map[string]time.Duration
}

func newHarness(t *testing.T) *harness {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	h := &harness{bin: filepath.Join(tmp, "connectome-demo"), root: root, tmp: tmp}
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", h.bin, "./cmd/connectome-demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	t.Logf("built the demo in %v", time.Since(t0).Round(time.Second))
	return h
}

func (h *harness) command(args, env []string) *exec.Cmd {
	base := []string{"--patients", strconv.Itoa(patients), "--cohort-dir", filepath.Join(h.tmp, "cohorts"),
		"--models-dir", filepath.Join(h.tmp, "models"), "--progress", "none", "--log-level", "info", "--workers", "2"}
	cmd := exec.Command(h.bin, append(base, args...)...)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// runToEnd runs the demo without a kill; it must exit 0. It returns the log.
func (h *harness) runToEnd(t *testing.T, args, env []string) string {
	t.Helper()
	cmd := h.command(args, env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var (
	logStage = regexp.MustCompile(`msg="stage (started|done|stopped)" stage=(\w+)`)
	logTime  = regexp.MustCompile(`^time=(\S+)`)
)

// stageDurations reads each stage's run time from a log.
func stageDurations(log string) map[string]time.Duration {
	started := map[string]time.Time{}
	out := map[string]time.Duration{}
	for _, l := range strings.Split(log, "\n") {
		m, tm := logStage.FindStringSubmatch(l), logTime.FindStringSubmatch(l)
		if m == nil || tm == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, tm[1])
		if err != nil {
			continue
		}
		if m[1] == "started" {
			started[m[2]] = at
		} else if s, ok := started[m[2]]; ok {
			out[m[2]] = at.Sub(s)
		}
	}
	return out
}

// runDir is where a chain of attempts keeps its run directory.
type runDir interface {
	args() []string
	env() []string
	// afterKill may simulate a new machine (a bucket run directory loses its working copy).
	afterKill(t *testing.T, rng *rand.Rand) string
	// seed copies in the reference run's cohort stage (and the demo's stamp), so that a
	// chain after the first starts where the BigQuery emulator is no longer needed.
	seed(t *testing.T, ref string)
	// check verifies what a crash may leave; tables returns every table at the end.
	check(t *testing.T) error
	tables(t *testing.T) map[string]string
}

// event is a stage line of a child's log.
type event struct{ kind, stage string }

// child is one running attempt.
type child struct {
	cmd    *exec.Cmd
	events chan event
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan error
}

func (h *harness) start(t *testing.T, d runDir) *child {
	t.Helper()
	cmd := h.command(d.args(), d.env())
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	c := &child{cmd: cmd, events: make(chan event, 256), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			c.mu.Lock()
			c.log.WriteString(l + "\n")
			c.mu.Unlock()
			if m := logStage.FindStringSubmatch(l); m != nil {
				c.events <- event{m[1], m[2]}
			}
		}
		close(c.events)
		c.exited <- cmd.Wait()
	}()
	return c
}

func (c *child) logText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// stages in run order, with the weight of each as a kill target: the cohort stage is the
// slowest to reach again (the BigQuery emulator starts first), so it is chosen less often.
var stageWeights = []struct {
	name   string
	weight int
}{{layout.Cohort, 1}, {layout.Fetch, 2}, {layout.Preprocess, 2}, {layout.Embed, 2}, {layout.Similarity, 2}, {layout.Report, 2}}

// crashRuns kills chains of attempts until points kills have landed, each chain until
// its run completes, and compares each completed run with want.
func (h *harness) crashRuns(t *testing.T, rng *rand.Rand, points int, ref string, newDir func(chain int) runDir, want map[string]string) {
	landed := map[string]int{}
	kills, chain := 0, 0
	perChain := 10
	t0 := time.Now()
	for kills < points {
		d := newDir(chain)
		done := map[string]bool{}
		// Later chains start after the cohort stage (the slowest to reach again), unless no
		// kill has landed in it yet: a kill aimed at it can miss when it runs faster than in
		// the reference run.
		if chain > 0 && landedIn(landed, layout.Cohort) {
			d.seed(t, ref)
			done[layout.Cohort] = true
		}
		hits := map[string]int{}
		// The killed attempts' logs, shown when the chain fails: the cause is often in an
		// earlier attempt than the one that fails.
		var attempts []string
		for k := 0; k < perChain && kills < points; k++ {
			if !slices.ContainsFunc(stageWeights, func(s struct {
				name   string
				weight int
			}) bool {
				return !done[s.name]
			}) {
				break // every stage done or hit twice in this chain: let the run end
			}
			where, killed := h.attempt(t, rng, d, done, landed)
			if !killed {
				break // the run completed before the kill
			}
			kills++
			landed[where.stages]++
			attempts = append(attempts, fmt.Sprintf("--- attempt killed in %s (kill %d):\n%s", where.stages, kills, where.log))
			// Two kills per stage and chain: later kills go to other stages and chains.
			if hits[where.target]++; hits[where.target] >= 2 {
				done[where.target] = true
			}
			note := d.afterKill(t, rng)
			t.Logf("kill %d (chain %d): in %s (target %s +%v)%s", kills, chain, where.stages, where.target, where.delay.Round(time.Millisecond), note)
			if err := d.check(t); err != nil {
				t.Fatalf("after kill %d (in %s): %v\n%s", kills, where.stages, err, strings.Join(attempts, ""))
			}
		}
		c := h.start(t, d)
		for range c.events {
		}
		if err := <-c.exited; err != nil {
			t.Fatalf("chain %d: the resumed run to the end: %v\n%s--- the resumed run to the end:\n%s", chain, err, strings.Join(attempts, ""), c.logText())
		}
		if err := d.check(t); err != nil {
			t.Fatalf("chain %d after completion: %v\n%s", chain, err, strings.Join(attempts, ""))
		}
		compareTables(t, fmt.Sprintf("chain %d", chain), want, d.tables(t))
		chain++
	}
	var summary []string
	for _, w := range slices.Sorted(maps.Keys(landed)) {
		summary = append(summary, fmt.Sprintf("%s: %d", w, landed[w]))
	}
	t.Logf("%d kills survived in %d chains (%v), tables identical; kills landed in: %s", kills, chain, time.Since(t0).Round(time.Second), strings.Join(summary, ", "))
	for _, s := range stageWeights {
		if !landedIn(landed, s.name) {
			t.Errorf("no kill landed in stage %s (raise CRASH_POINTS or change CRASH_SEED)", s.name)
		}
	}
}

// landedIn reports whether a kill has landed while stage was running.
func landedIn(landed map[string]int, stage string) bool {
	for w := range landed {
		if slices.Contains(strings.Split(w, "+"), stage) {
			return true
		}
	}
	return false
}

// landing is where a kill landed: the stages running then, the target and the delay.
type landing struct {
	stages, target string
	delay          time.Duration
	log            string // the killed attempt's log
}

// attempt starts the run, picks a target (a stage not yet done in this chain, one that no
// kill has landed in first, or the start-up) and kills the process a random time after the
// target begins. killed is false when the run completed first.
func (h *harness) attempt(t *testing.T, rng *rand.Rand, d runDir, done map[string]bool, landed map[string]int) (where landing, killed bool) {
	t.Helper()
	var cands, fresh []string
	for _, s := range stageWeights {
		if done[s.name] {
			continue
		}
		for range s.weight {
			cands = append(cands, s.name)
		}
		if !landedIn(landed, s.name) {
			fresh = append(fresh, s.name)
		}
	}
	target := "start-up"
	switch {
	case len(fresh) > 0:
		target = fresh[0]
	case len(cands) > 0 && rng.IntN(10) > 0:
		target = cands[rng.IntN(len(cands))]
	}
	span := h.durations[target]
	if target == "start-up" {
		span = 300 * time.Millisecond
	}
	delay := time.Duration(rng.Int64N(int64(max(span, 20*time.Millisecond)*5/4) + 1))
	c := h.start(t, d)
	running := map[string]bool{}
	var timer <-chan time.Time
	if target == "start-up" {
		timer = time.After(delay)
	}
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				err := <-c.exited
				if err != nil {
					t.Fatalf("the run stopped by itself (target %s): %v\n%s", target, err, c.logText())
				}
				return landing{}, false
			}
			switch ev.kind {
			case "started":
				running[ev.stage] = true
				if ev.stage == target && timer == nil {
					timer = time.After(delay)
				}
			case "done":
				delete(running, ev.stage)
				done[ev.stage] = true
			default:
				delete(running, ev.stage)
			}
			continue
		case <-timer:
		}
		break
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	// Events already logged before the kill still count.
	for ev := range c.events {
		switch ev.kind {
		case "started":
			running[ev.stage] = true
		case "done":
			delete(running, ev.stage)
			done[ev.stage] = true
		default:
			delete(running, ev.stage)
		}
	}
	<-c.exited
	in := strings.Join(slices.Sorted(maps.Keys(running)), "+")
	if in == "" {
		in = "between stages"
		if target == "start-up" {
			in = "start-up"
		}
	}
	return landing{stages: in, target: target, delay: delay, log: c.logText()}, true
}

// isTable reports whether rel (a run directory path) is a result the test compares: every
// file but the run's own records (markers, start records, manifests, locks), the DICOM
// cache, embed's work parts (their split depends on where a run was cut), and the demo
// generator's ground truth, which the demo writes beside a finished local run outside the
// pipeline (a gs:// run has no local copy of it to compare).
func isTable(rel string) bool {
	base := path.Base(rel)
	switch {
	case base == pipeline.MarkerFile || base == "_STARTED.json" || pipeline.IsLockFile(base) || atomicfile.IsTemp(base):
		return false
	case strings.HasPrefix(rel, layout.DICOMDir+"/") || strings.HasPrefix(rel, "embed/parts/"):
		return false
	case !strings.Contains(rel, "/") && strings.HasPrefix(base, "manifest"):
		return false
	case !strings.Contains(rel, "/") && strings.TrimSuffix(base, path.Ext(base)) == strings.TrimSuffix(demo.TruthTableName, path.Ext(demo.TruthTableName)):
		return false
	}
	return true
}

func localTables(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !isTable(rel) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = sum(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func compareTables(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for rel, w := range want {
		switch g, ok := got[rel]; {
		case !ok:
			t.Errorf("%s: %s is missing", what, rel)
		case g != w:
			t.Errorf("%s: %s differs from the uninterrupted run's", what, rel)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s: %s is not in the uninterrupted run", what, rel)
		}
	}
}

// checkFile checks that a file under a final name is whole: an Arrow file reads to its end,
// a JSON file parses.
func checkFile(rel string, b []byte) error {
	switch path.Ext(rel) {
	case ".arrow":
		r, err := ipc.NewFileReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
		if err != nil {
			return fmt.Errorf("%s is not a whole Arrow file: %w", rel, err)
		}
		defer r.Close()
		for i := range r.NumRecords() {
			rec, err := r.RecordAt(i)
			if err != nil {
				return fmt.Errorf("%s: record batch %d: %w", rel, i, err)
			}
			rec.Release()
		}
	case ".json":
		if path.Base(rel) != "_STARTED.json" && !json.Valid(b) {
			return fmt.Errorf("%s is not whole JSON", rel)
		}
	}
	return nil
}

// checkMarker checks that every output a marker records is there as recorded; read returns
// a file's content by its run-directory path (ok false when absent).
func checkMarker(markerRel string, b []byte, read func(rel string) ([]byte, bool)) error {
	var m pipeline.Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("marker %s: %w", markerRel, err)
	}
	if m.Outputs == nil {
		return fmt.Errorf("marker %s lists no outputs", markerRel)
	}
	dir := path.Dir(markerRel)
	for _, o := range m.Outputs {
		c, ok := read(dir + "/" + o.Path)
		switch {
		case !ok:
			return fmt.Errorf("marker %s: output %s is missing", markerRel, o.Path)
		case int64(len(c)) != o.Size || sum(c) != o.SHA256:
			return fmt.Errorf("marker %s: output %s is not what it records", markerRel, o.Path)
		}
	}
	return nil
}

// localDir is a local run directory.
type localDir struct{ path string }

func (d *localDir) args() []string                          { return []string{"--run-dir", d.path} }
func (d *localDir) env() []string                           { return nil }
func (d *localDir) afterKill(*testing.T, *rand.Rand) string { return "" }
func (d *localDir) tables(t *testing.T) map[string]string   { return localTables(t, d.path) }

func (d *localDir) seed(t *testing.T, ref string) {
	for _, rel := range seedFiles(t, ref) {
		b, err := os.ReadFile(filepath.Join(ref, rel))
		if err == nil {
			err = atomicfile.WriteBytes(filepath.Join(d.path, rel), b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// seedFiles are the reference run's cohort stage and stamp, relative paths.
func seedFiles(t *testing.T, ref string) []string {
	out := []string{"demo-cohort.json"}
	err := filepath.WalkDir(filepath.Join(ref, layout.Cohort), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(ref, p)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *localDir) check(t *testing.T) error {
	read := func(rel string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(d.path, filepath.FromSlash(rel)))
		return b, err == nil
	}
	return filepath.WalkDir(d.path, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || e.IsDir() || atomicfile.IsTemp(e.Name()) {
			return err
		}
		rel, _ := filepath.Rel(d.path, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, layout.DICOMDir+"/") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if e.Name() == pipeline.MarkerFile {
			return checkMarker(rel, b, read)
		}
		return checkFile(rel, b)
	})
}

// bucketDir is a gs:// run directory on the test's fake server, with a working copy that a
// kill loses now and then (the next attempt runs on a new machine).
type bucketDir struct {
	srv          *fakestorage.Server
	host, prefix string
	work         string
}

func (d *bucketDir) args() []string {
	return []string{"--run-dir", "gs://crash/" + d.prefix, "--work-dir", d.work}
}
func (d *bucketDir) env() []string { return []string{"STORAGE_EMULATOR_HOST=" + d.host} }

func (d *bucketDir) afterKill(t *testing.T, rng *rand.Rand) string {
	if rng.IntN(4) > 0 {
		return ""
	}
	if err := os.RemoveAll(d.work); err != nil {
		t.Fatal(err)
	}
	return " (working copy lost: the next attempt is a new machine)"
}

func (d *bucketDir) seed(t *testing.T, ref string) {
	for _, rel := range seedFiles(t, ref) {
		b, err := os.ReadFile(filepath.Join(ref, rel))
		if err != nil {
			t.Fatal(err)
		}
		d.srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "crash",
			Name: d.prefix + "/" + filepath.ToSlash(rel)}, Content: b})
	}
}

func (d *bucketDir) objects(t *testing.T) map[string][]byte {
	objs, _, err := d.srv.ListObjectsWithOptions("crash", fakestorage.ListOptions{Prefix: d.prefix + "/"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, o := range objs {
		full, err := d.srv.GetObject("crash", o.Name)
		if err != nil {
			continue // deleted since the listing
		}
		out[strings.TrimPrefix(o.Name, d.prefix+"/")] = full.Content
	}
	return out
}

func (d *bucketDir) check(t *testing.T) error {
	objs := d.objects(t)
	read := func(rel string) ([]byte, bool) {
		b, ok := objs[rel]
		return b, ok
	}
	for _, rel := range slices.Sorted(maps.Keys(objs)) {
		var err error
		if path.Base(rel) == pipeline.MarkerFile {
			err = checkMarker(rel, objs[rel], read)
		} else {
			err = checkFile(rel, objs[rel])
		}
		if err != nil {
			return fmt.Errorf("gs://crash/%s: %w", d.prefix, err)
		}
	}
	return nil
}

func (d *bucketDir) tables(t *testing.T) map[string]string {
	out := map[string]string{}
	for rel, b := range d.objects(t) {
		if isTable(rel) {
			out[rel] = sum(b)
		}
	}
	return out
}
