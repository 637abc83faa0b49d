package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/vbauerster/mpb/v8/decor"

	"connectome/pipeline"
)

// Progress shows one bar per stage on a terminal, or, elsewhere (CI, log files), one log line
// per active stage every interval.
type Progress struct {
	log      *slog.Logger
	interval time.Duration
	bars     *mpb.Progress // nil when not a terminal

	mu     sync.Mutex
	active []*Bar
	stop   context.CancelFunc
	done   chan struct{}
}

// NewProgress draws bars on w when tty is true; otherwise it logs to log every interval
// (never, when interval is not positive).
func NewProgress(w io.Writer, tty bool, log *slog.Logger, interval time.Duration) *Progress {
	p := &Progress{log: log, interval: interval, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	if tty {
		p.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
		close(p.done)
		return p
	}
	if interval <= 0 {
		close(p.done) // silent: no periodic lines (tests, or a caller with its own reporting)
		return p
	}
	go p.logLoop(ctx)
	return p
}

// Writer returns where log lines should go so that they print above the bars (w itself when
// not drawing bars).
func (p *Progress) Writer(w io.Writer) io.Writer {
	if p.bars != nil {
		return p.bars
	}
	return w
}

func (p *Progress) logLoop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.mu.Lock()
			bars := append([]*Bar(nil), p.active...)
			p.mu.Unlock()
			for _, b := range bars {
				b.logLine(p.log)
			}
		}
	}
}

// Bar is one stage's progress.
type Bar struct {
	name  string
	start time.Time
	done  atomic.Int64
	total atomic.Int64
	bar   *mpb.Bar
	owner *Progress
}

// Start implements pipeline.Progress.
func (p *Progress) Start(name string, total int64) pipeline.Bar {
	b := &Bar{name: name, start: time.Now(), owner: p}
	b.total.Store(total)
	if p.bars != nil {
		b.bar = p.bars.New(total, mpb.BarStyle().Lbound("[").Rbound("]"),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-10s", name)), decor.CountersNoUnit(" %d/%d", decor.WCSyncWidth)),
			mpb.AppendDecorators(decor.AverageSpeed(0, " %.1f/s", decor.WCSyncWidth), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
		)
	}
	p.mu.Lock()
	p.active = append(p.active, b)
	p.mu.Unlock()
	return b
}

// Add records n more finished items.
func (b *Bar) Add(n int64) {
	b.done.Add(n)
	if b.bar != nil {
		b.bar.IncrInt64(n)
	}
}

// SetTotal sets the number of items, once known.
func (b *Bar) SetTotal(n int64) {
	b.total.Store(n)
	if b.bar != nil {
		b.bar.SetTotal(n, false)
	}
}

// Finish completes the bar (or drops it when the stage did not complete).
func (b *Bar) Finish(ok bool) {
	if b.bar != nil {
		if ok {
			b.bar.SetTotal(-1, true)
		} else {
			b.bar.Abort(false)
		}
		b.bar.Wait()
	}
	p := b.owner
	p.mu.Lock()
	for i, a := range p.active {
		if a == b {
			p.active = append(p.active[:i], p.active[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if b.bar == nil && ok {
		b.logLine(p.log)
	}
}

func (b *Bar) logLine(log *slog.Logger) {
	done, total := b.done.Load(), b.total.Load()
	el := time.Since(b.start)
	rate := float64(done) / el.Seconds()
	attrs := []any{"stage", b.name, "done", done, "total", total, "rate_per_s", fmt.Sprintf("%.2f", rate), "elapsed", el.Round(time.Second).String()}
	if total > 0 && done > 0 && done < total {
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		attrs = append(attrs, "eta", eta.Round(time.Second).String())
	}
	log.Info("progress", attrs...)
}

// Close stops drawing or logging.
func (p *Progress) Close() {
	p.stop()
	<-p.done
	if p.bars != nil {
		p.bars.Shutdown()
	}
}
