package pipeline

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lockPrefix starts the name of every lock file at the run root.
const lockPrefix = "_LOCK"

// LockName is the lock file a process holds at the run root while it runs: _LOCK, or
// _LOCK-shard-i-of-N for a shard process (shards write disjoint directories and may run at
// once in one run directory; two processes of the same part may not).
func LockName(s Shard) string {
	if s.IsPart() {
		return lockPrefix + "-" + s.Name()
	}
	return lockPrefix
}

// IsLockFile reports whether name (a base name at the run root) is a lock file: it belongs
// to this machine's processes and is never uploaded.
func IsLockFile(name string) bool {
	return name == lockPrefix || strings.HasPrefix(name, lockPrefix+"-")
}

// Holder is what a lock file says about the process that holds it.
type Holder struct {
	// ID tells attempts apart, even two in one process.
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Command []string  `json:"command,omitempty"`
}

func (h Holder) String() string {
	s := fmt.Sprintf("pid %d on host %s (since %s)", h.PID, h.Host, h.Started.Format(time.RFC3339))
	if h.ID != "" {
		s = "attempt " + h.ID + ", " + s
	}
	return s
}

func currentHolder(command []string) Holder {
	host, _ := os.Hostname()
	id := make([]byte, 6)
	_, _ = rand.Read(id) // crypto/rand does not fail on Linux
	return Holder{ID: hex.EncodeToString(id), Host: host, PID: os.Getpid(), Started: time.Now().UTC(), Command: command}
}

// runLock is a held lock file. The kernel's flock(2) lock is what excludes: it goes with the
// process, so a process killed with SIGKILL leaves no lock behind, only the file naming it,
// which the next holder reports as a crashed run.
type runLock struct {
	f *os.File
}

// acquireLock takes the lock file name in runDir for this process or says who holds it.
func acquireLock(runDir, name string, me Holder, log *slog.Logger) (*runLock, error) {
	p := filepath.Join(runDir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", p, err)
	}
	prev, _ := readHolder(f)
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		who := "another process"
		if prev != nil {
			who = prev.String()
		}
		return nil, fmt.Errorf("run directory %s is in use by %s (lock file %s): wait for that run to end, or use another run directory", runDir, who, p)
	case errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.ENOTSUP):
		// A file system without locks: fall back to the holder's pid, on this host only.
		if prev != nil && prev.alive(me.Host) {
			f.Close()
			return nil, fmt.Errorf("run directory %s is in use by %s (lock file %s; the file system has no locks, so a run on another host cannot be detected): wait for that run to end, or remove the lock file if it is not running", runDir, prev, p)
		}
		log.Warn("the run directory's file system has no file locks: only runs on this host are detected", "lock", p)
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if prev != nil {
		log.Warn("a run ended without releasing the run directory (crashed or killed): taking over", "lock", p, "holder", prev.String())
	}
	b, err := json.Marshal(me)
	if err == nil {
		err = writeAt0(f, append(b, '\n'))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock file %s: %w", p, err)
	}
	return &runLock{f: f}, nil
}

// readHolder reads a lock file; nil when it is empty (released) or unreadable.
func readHolder(f *os.File) (*Holder, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return nil, err
	}
	var h Holder
	if err := json.Unmarshal(b, &h); err != nil {
		return &Holder{Host: "?", PID: 0}, nil
	}
	return &h, nil
}

// alive reports whether the holder is a running process of host (this machine). On another
// host it cannot be known and counts as alive.
func (h Holder) alive(host string) bool {
	if h.Host != host {
		return true
	}
	if h.PID <= 0 {
		return false
	}
	err := syscall.Kill(h.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func writeAt0(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// release empties the lock file (a run that ended well leaves no holder to report) and lets
// go of the lock.
func (l *runLock) release() error {
	if l == nil {
		return nil
	}
	err := l.f.Truncate(0)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
