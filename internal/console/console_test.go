package console

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProgressLogsOnNonTerminal(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := NewProgress(nil, false, log, 20*time.Millisecond)
	b := p.Start("embed", 10)
	b.Add(4)
	time.Sleep(80 * time.Millisecond)
	b.Finish(true)
	p.Close()
	out := buf.String()
	if !strings.Contains(out, "stage=embed done=4 total=10") || !strings.Contains(out, "eta=") {
		t.Fatalf("progress lines:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
