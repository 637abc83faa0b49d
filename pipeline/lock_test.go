package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The loser of two runs on one run directory stops at once with an error naming the
// holder; shards of one run each take their own lock.
func TestSecondRunOnOneDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	held, err := acquireLock(dir, LockName(Shard{}), Holder{Host: "h1", PID: os.Getpid(), Started: time.Now()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPipeline(2, 1)
	_, err, code := run(t, context.Background(), p, dir, Options{})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "is in use by pid "+strconv.Itoa(os.Getpid())+" on host h1") ||
		!strings.Contains(err.Error(), filepath.Join(dir, "_LOCK")) {
		t.Fatalf("second run: %v (exit %d)", err, code)
	}
	if p.runs[0].Load() != 0 {
		t.Error("the loser ran a stage")
	}
	// Another shard's lock is another file.
	other, err := acquireLock(dir, LockName(Shard{1, 2}), currentHolder(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("shard 1/2 beside the unsharded holder: %v", err)
	}
	if err := other.release(); err != nil {
		t.Fatal(err)
	}
	if err := held.release(); err != nil {
		t.Fatal(err)
	}
	if _, err, code := run(t, context.Background(), p, dir, Options{}); err != nil || code != 0 {
		t.Fatalf("after the release: %v %d", err, code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "_LOCK")); len(b) != 0 {
		t.Errorf("a finished run left its lock file naming it: %s", b)
	}
}

// A lock file left by a killed process (its pid gone) is taken over with a warning that
// names it.
func TestStaleLockIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	host, _ := os.Hostname()
	dead := Holder{Host: host, PID: cmd.Process.Pid, Started: time.Now().Add(-time.Hour)}
	b, _ := json.Marshal(dead)
	if err := os.WriteFile(filepath.Join(dir, "_LOCK"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if dead.alive(host) {
		t.Fatalf("pid %d of a finished process counts as alive", dead.PID)
	}
	if me := currentHolder(nil); !me.alive(host) || !(Holder{Host: "elsewhere", PID: 1 << 30}).alive(host) {
		t.Error("this process, or one on another host, counts as dead")
	}
	var logs bytes.Buffer
	p := newTestPipeline(2, 1)
	if _, err, code := run(t, context.Background(), p, dir, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil || code != 0 {
		t.Fatalf("run over a stale lock: %v %d", err, code)
	}
	if !strings.Contains(logs.String(), "crashed or killed") || !strings.Contains(logs.String(), "pid "+strconv.Itoa(dead.PID)) {
		t.Errorf("no warning naming the stale holder:\n%s", logs.String())
	}
}
