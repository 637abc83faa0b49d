// Package console is a command's terminal: slog logging in text or JSON, and the progress
// display (bars on a terminal, log lines elsewhere) that the engine reports to.
package console

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/term"
)

// New sets up a command's logging and progress display on w (usually stderr):
// format "text" or "json"; level debug|info|warn|error; progress "auto" (bars on a terminal
// with text logs, else a log line per stage every few seconds), "bars", "log" or "none". Log
// lines print above the bars. Close the Progress when the command ends.
func New(w io.Writer, format, level, progress string) (*slog.Logger, *Progress, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	bars, interval := false, 5*time.Second
	switch progress {
	case "auto":
		bars = tty && format == "text"
	case "bars":
		bars = true
	case "log":
	case "none":
		interval = 0
	default:
		return nil, nil, fmt.Errorf("--progress %q: want auto, bars, log or none", progress)
	}
	// The progress display needs the logger and the logger must print above the bars, so
	// the handler writes through a writer that is pointed at the bars once they exist.
	sw := &switchWriter{w: w}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(sw, opts)
	case "json":
		h = slog.NewJSONHandler(sw, opts)
	default:
		return nil, nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	l := slog.New(h)
	p := NewProgress(w, bars, l, interval)
	sw.w = p.Writer(w)
	return l, p, nil
}

type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(b []byte) (int, error) { return s.w.Write(b) }
