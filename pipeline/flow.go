package pipeline

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"
)

// Flow runs typed steps connected by bounded channels inside a stage. The first halt error
// (any error that is not an *ItemError) cancels the flow's context with that error as its
// cause, so every step stops; item errors go to the failure handler and the flow goes on.
type Flow struct {
	g    *errgroup.Group
	ctx  context.Context
	fail func(item string, err error)
}

// NewFlow starts a flow under parent. fail records per-item failures (usually Context.Fail).
func NewFlow(parent context.Context, fail func(item string, err error)) (*Flow, context.Context) {
	g, ctx := errgroup.WithContext(parent)
	return &Flow{g: g, ctx: ctx, fail: fail}, ctx
}

// Step is one typed processing step: Workers goroutines apply Do to each input; Do calls emit
// for each output (zero, one or many). The output channel holds at most Buffer values, so a
// slow consumer holds back the producers (backpressure).
type Step[In, Out any] struct {
	Name    string
	Workers int
	Buffer  int
	// ID names an input in failure records.
	ID func(In) string
	Do func(ctx context.Context, in In, emit func(Out) error) error
}

// Source sends items into a new channel of capacity buffer.
func Source[T any](f *Flow, items []T, buffer int) <-chan T {
	out := make(chan T, buffer)
	f.g.Go(func() error {
		defer close(out)
		for _, it := range items {
			select {
			case out <- it:
			case <-f.ctx.Done():
				return context.Cause(f.ctx)
			}
		}
		return nil
	})
	return out
}

// Pipe starts s over in and returns its output channel, closed when every worker is done.
func Pipe[In, Out any](f *Flow, in <-chan In, s Step[In, Out]) <-chan Out {
	workers := max(s.Workers, 1)
	out := make(chan Out, max(s.Buffer, 0))
	done := make(chan struct{}, workers)
	emit := func(v Out) error {
		select {
		case out <- v:
			return nil
		case <-f.ctx.Done():
			return context.Cause(f.ctx)
		}
	}
	for w := 0; w < workers; w++ {
		f.g.Go(func() error {
			defer func() { done <- struct{}{} }()
			for {
				var v In
				var ok bool
				select {
				case v, ok = <-in:
					if !ok {
						return nil
					}
				case <-f.ctx.Done():
					return context.Cause(f.ctx)
				}
				if err := s.Do(f.ctx, v, emit); err != nil {
					var ie *ItemError
					if errors.As(err, &ie) && f.ctx.Err() == nil {
						id := ie.Item
						if s.ID != nil {
							id = s.ID(v)
						}
						f.fail(id, err)
						continue
					}
					return err
				}
			}
		})
	}
	f.g.Go(func() error {
		for w := 0; w < workers; w++ {
			<-done
		}
		close(out)
		return nil
	})
	return out
}

// Sink consumes in with fn in one goroutine.
func Sink[T any](f *Flow, in <-chan T, fn func(T) error) {
	f.g.Go(func() error {
		for {
			select {
			case v, ok := <-in:
				if !ok {
					return nil
				}
				if err := fn(v); err != nil {
					return err
				}
			case <-f.ctx.Done():
				return context.Cause(f.ctx)
			}
		}
	})
}

// Wait waits for every step and returns the first halt error (or the cancellation cause).
func (f *Flow) Wait() error { return f.g.Wait() }
