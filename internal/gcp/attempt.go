package gcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"connectome/pipeline"
)

// Two attempts at one part of a run (a Cloud Batch task retried while its first attempt
// still writes, a preempted VM that comes back) must never mix their objects. Each attempt
// claims its part by writing the claim object (pipeline.LockName of its shard, at the run
// root) with a generation precondition; before every upload or delete it checks that the
// claim is still its own, and every object it writes or deletes is conditional on the
// generation it listed or wrote itself. The later attempt takes over; the earlier one stops
// at its next step with an error naming the later one.

func (d *Dir) setGen(rel string, gen int64) {
	d.gmu.Lock()
	defer d.gmu.Unlock()
	if d.gens == nil {
		d.gens = map[string]int64{}
	}
	if gen == 0 {
		delete(d.gens, rel)
		return
	}
	d.gens[rel] = gen
}

func (d *Dir) gen(rel string) int64 {
	d.gmu.Lock()
	defer d.gmu.Unlock()
	return d.gens[rel]
}

// stat returns the object rel's listing; ok is false when there is none.
func (d *Dir) stat(ctx context.Context, rel string) (ObjectInfo, bool, error) {
	objs, err := d.Bucket.List(ctx, d.object(rel))
	if err != nil {
		return ObjectInfo{}, false, err
	}
	for _, o := range objs {
		if o.Name == d.object(rel) {
			return o, true, nil
		}
	}
	return ObjectInfo{}, false, nil
}

// put writes the local file f as the object rel: only over the generation this process
// knows, or only if there is none.
func (d *Dir) put(ctx context.Context, rel string, f *os.File) error {
	c, ok := d.Bucket.(Conditional)
	if !ok {
		return d.Bucket.Write(ctx, d.object(rel), f)
	}
	gen, err := c.WriteIf(ctx, d.object(rel), f, d.gen(rel))
	if errors.Is(err, ErrConflict) {
		o, ok, serr := d.stat(ctx, rel)
		switch {
		case serr == nil && ok && sameContent(f, o):
			// A request retried after its first try was stored fails its own precondition:
			// the object then holds this very content.
			gen, err = o.Generation, nil
		case serr == nil && d.replacesEarlierAttempt(ctx):
			d.log().Info("replacing an object an earlier attempt wrote after the takeover", "object", rel)
			gen, err = d.rewrite(ctx, c, rel, f, o.Generation) // 0 when the object is gone
		}
	}
	if err != nil {
		return d.conflict(ctx, rel, err)
	}
	d.setGen(rel, gen)
	return nil
}

// rewrite writes f as rel, from its start, over generation gen (0: over no object).
func (d *Dir) rewrite(ctx context.Context, c Conditional, rel string, f *os.File, gen int64) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return c.WriteIf(ctx, d.object(rel), f, gen)
}

// replacesEarlierAttempt reports whether this attempt took the claim over and still holds
// it: then whoever changed an object under it was the earlier attempt, which has not yet
// seen the takeover (it checks before each push and before each marker, and its next write
// of that object, made over the generation it knows, fails), and the object is this
// attempt's to replace, once. A writer outside the claims is never overwritten.
func (d *Dir) replacesEarlierAttempt(ctx context.Context) bool {
	return d.tookOver() && d.checkClaim(ctx) == nil
}

func sameContent(f *os.File, o ObjectInfo) bool {
	fi, err := f.Stat()
	if err != nil || fi.Size() != o.Size {
		return false
	}
	c, err := fileCRC(f.Name())
	return err == nil && c == o.CRC32C
}

// remove deletes the object rel if it has generation gen (-1: the one this process knows;
// an object it never saw is not its to delete).
func (d *Dir) remove(ctx context.Context, rel string, gen int64) error {
	c, ok := d.Bucket.(Conditional)
	if !ok {
		return d.Bucket.Delete(ctx, d.object(rel))
	}
	if gen < 0 {
		gen = d.gen(rel)
	}
	if gen == 0 {
		return nil
	}
	err := c.DeleteIf(ctx, d.object(rel), gen)
	if errors.Is(err, ErrConflict) {
		// As in put: an attempt that took over deletes what the earlier one rewrote.
		if o, ok, serr := d.stat(ctx, rel); serr == nil && d.replacesEarlierAttempt(ctx) {
			err = nil
			if ok {
				err = c.DeleteIf(ctx, d.object(rel), o.Generation)
			}
		}
	}
	if err != nil {
		return d.conflict(ctx, rel, err)
	}
	d.setGen(rel, 0)
	return nil
}

// conflict names, in err, the attempt that changed rel when that is what happened.
func (d *Dir) conflict(ctx context.Context, rel string, err error) error {
	if !errors.Is(err, ErrConflict) {
		return err
	}
	if cerr := d.checkClaim(ctx); cerr != nil {
		return fmt.Errorf("%s changed under this attempt: %w", rel, cerr)
	}
	return fmt.Errorf("%s was changed by another writer although this attempt still holds the run directory: %w", rel, err)
}

// Claim implements pipeline.Remote.
func (d *Dir) Claim(ctx context.Context, name string, h pipeline.Holder) (func(context.Context) error, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, exists, err := d.stat(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read the claim %s/%s: %w", d.URL, name, err)
	}
	if exists {
		d.log().Warn("taking over from an earlier attempt (crashed, preempted, or still running: it stops at its next upload)",
			"claim", d.URL.String()+"/"+name, "attempt", d.holderOf(ctx, name))
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	var gen int64
	if c, ok := d.Bucket.(Conditional); ok {
		gen, err = c.WriteIf(ctx, d.object(name), bytes.NewReader(b), prev.Generation)
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("another attempt claimed %s/%s at the same moment (%s): this one stops", d.URL, name, d.holderOf(ctx, name))
		}
	} else {
		err = d.Bucket.Write(ctx, d.object(name), bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("claim %s/%s: %w", d.URL, name, err)
	}
	d.claim = &claim{rel: name, gen: gen, tookOver: exists}
	return d.release, nil
}

// release gives up the claim, unless a later attempt has taken it over.
func (d *Dir) release(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.claim
	d.claim = nil
	if c == nil {
		return nil
	}
	cb, ok := d.Bucket.(Conditional)
	if !ok {
		return d.Bucket.Delete(ctx, d.object(c.rel))
	}
	if err := cb.DeleteIf(ctx, d.object(c.rel), c.gen); err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("release the claim %s/%s: %w", d.URL, c.rel, err)
	}
	return nil
}

func (d *Dir) tookOver() bool { return d.claim != nil && d.claim.tookOver }

// checkClaim fails when a later attempt has taken over this process's claim.
func (d *Dir) checkClaim(ctx context.Context) error {
	c := d.claim
	if c == nil || c.gen == 0 {
		return nil // no claim, or a store without generations
	}
	o, ok, err := d.stat(ctx, c.rel)
	switch {
	case err != nil:
		return fmt.Errorf("check the claim %s/%s: %w", d.URL, c.rel, err)
	case !ok:
		return fmt.Errorf("another attempt took over %s (its claim %s is gone: that attempt has finished): this attempt stops and uploads nothing more", d.URL, c.rel)
	case o.Generation != c.gen:
		return fmt.Errorf("another attempt took over %s: %s (claim %s): this attempt stops and uploads nothing more", d.URL, d.holderOf(ctx, c.rel), c.rel)
	}
	return nil
}

// holderOf describes the attempt the claim object rel names.
func (d *Dir) holderOf(ctx context.Context, rel string) string {
	var buf bytes.Buffer
	if err := d.Bucket.Read(ctx, d.object(rel), &limitWriter{w: &buf, n: 1 << 16}); err != nil {
		return "an attempt whose claim cannot be read (" + err.Error() + ")"
	}
	var h pipeline.Holder
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		return "an attempt with an unreadable claim"
	}
	return h.String()
}

// limitWriter keeps the first n bytes written to it.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := min(len(p), l.n)
	if k > 0 {
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
