package gcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"connectome/pipeline"
)

// fake-gcs-server must honour the generation preconditions the run directory relies on;
// this checks it does, through the real client.
func TestFakeGCSHonoursPreconditions(t *testing.T) {
	ctx := context.Background()
	_, d, _ := newFake(t)
	b := d.Bucket.(GCSBucket)
	g1, err := b.WriteIf(ctx, "p/o", strings.NewReader("one"), 0)
	if err != nil || g1 == 0 {
		t.Fatalf("create-only write of a new object: gen %d, %v", g1, err)
	}
	if _, err := b.WriteIf(ctx, "p/o", strings.NewReader("two"), 0); !errors.Is(err, ErrConflict) {
		t.Errorf("create-only write over an object: %v, want ErrConflict", err)
	}
	if _, err := b.WriteIf(ctx, "p/o", strings.NewReader("two"), g1+1000); !errors.Is(err, ErrConflict) {
		t.Errorf("write with a wrong generation: %v, want ErrConflict", err)
	}
	g2, err := b.WriteIf(ctx, "p/o", strings.NewReader("two"), g1)
	if err != nil || g2 == g1 {
		t.Fatalf("write with the right generation: gen %d→%d, %v", g1, g2, err)
	}
	if err := b.DeleteIf(ctx, "p/o", g1); !errors.Is(err, ErrConflict) {
		t.Errorf("delete with an old generation: %v, want ErrConflict", err)
	}
	objs, err := b.List(ctx, "p/")
	if err != nil || len(objs) != 1 || objs[0].Generation != g2 || objs[0].Size != 3 {
		t.Fatalf("listing %+v %v, want one object of generation %d", objs, err, g2)
	}
	if err := b.DeleteIf(ctx, "p/o", g2); err != nil {
		t.Errorf("delete with the right generation: %v", err)
	}
}

// twoAttempts opens the same run directory twice, as two machines would, each with a
// working copy of its own.
func twoAttempts(t *testing.T) (first, second *Dir) {
	t.Helper()
	srv, first, _ := newFake(t)
	second, closeFn, err := Open(context.Background(), first.URL, t.TempDir(), ClientOptions{Endpoint: srv.URL(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFn() })
	return first, second
}

func holder(pid int) pipeline.Holder {
	return pipeline.Holder{Host: "vm-" + string(rune('a'+pid%26)), PID: pid, Started: time.Now().UTC()}
}

// A second attempt at the same part takes over; the first stops at its next step with an
// error naming the second, and none of its later uploads lands.
func TestSecondAttemptTakesOverAndFirstStops(t *testing.T) {
	ctx := context.Background()
	first, second := twoAttempts(t)
	all := func(string) bool { return true }

	rel1, err := first.Claim(ctx, "_LOCK-shard-0-of-2", holder(101))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Pull(ctx, all); err != nil {
		t.Fatal(err)
	}
	write(t, first.Local, "embed/shard-0-of-2/a.arrow", "first attempt")
	write(t, first.Local, "embed/shard-0-of-2/"+pipeline.MarkerFile, "{}")
	if err := first.Push(ctx, "embed/shard-0-of-2/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}

	rel2, err := second.Claim(ctx, "_LOCK-shard-0-of-2", holder(202))
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Pull(ctx, all); err != nil {
		t.Fatal(err)
	}
	write(t, first.Local, "embed/shard-0-of-2/b.arrow", "late file of the first attempt")
	for name, err := range map[string]error{
		"push":       first.Push(ctx, ""),
		"invalidate": first.Invalidate(ctx, "embed/shard-0-of-2/"+pipeline.MarkerFile),
	} {
		if err == nil || !strings.Contains(err.Error(), "another attempt took over") || !strings.Contains(err.Error(), "pid 202 on host vm-u") {
			t.Errorf("first attempt's %s after the takeover: %v", name, err)
		}
	}
	if got := names(t, second.Bucket, "runs/r1/embed/"); strings.Join(got, ",") != "shard-0-of-2/"+pipeline.MarkerFile+",shard-0-of-2/a.arrow" {
		t.Errorf("objects after the takeover: %v", got)
	}
	// The second attempt redoes the stage: its marker and files replace the first's.
	if err := second.Invalidate(ctx, "embed/shard-0-of-2/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(second.Local + "/embed/shard-0-of-2/a.arrow"); err != nil {
		t.Fatal(err)
	}
	write(t, second.Local, "embed/shard-0-of-2/c.arrow", "second attempt")
	write(t, second.Local, "embed/shard-0-of-2/"+pipeline.MarkerFile, "{\"by\": 2}")
	if err := second.Push(ctx, "embed/shard-0-of-2/"+pipeline.MarkerFile); err != nil {
		t.Fatal(err)
	}
	if got := names(t, second.Bucket, "runs/r1/embed/"); strings.Join(got, ",") != "shard-0-of-2/"+pipeline.MarkerFile+",shard-0-of-2/c.arrow" {
		t.Errorf("objects after the second attempt: %v", got)
	}
	if err := rel1(ctx); err != nil {
		t.Errorf("the first attempt's release: %v", err)
	}
	if got := names(t, second.Bucket, "runs/r1/_LOCK"); len(got) != 1 {
		t.Errorf("the first attempt's release removed the second's claim: %v", got)
	}
	if err := rel2(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(t, second.Bucket, "runs/r1/_LOCK"); len(got) != 0 {
		t.Errorf("claim left after the release: %v", got)
	}
}

// An object changed behind a process's back (by a writer that claimed nothing) fails the
// upload instead of being overwritten.
func TestUploadOverAnUnseenObjectIsRefused(t *testing.T) {
	ctx := context.Background()
	_, d, _ := newFake(t)
	if _, err := d.Claim(ctx, "_LOCK", holder(7)); err != nil {
		t.Fatal(err)
	}
	if err := d.Pull(ctx, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if err := d.Bucket.Write(ctx, "runs/r1/report/index.html", strings.NewReader("someone else's")); err != nil {
		t.Fatal(err)
	}
	write(t, d.Local, "report/index.html", "mine")
	err := d.Push(ctx, "")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "report/index.html") {
		t.Fatalf("push over an unseen object: %v", err)
	}
}

// An attempt that took over replaces what the earlier attempt wrote after the takeover (an
// upload in flight when it happened); the earlier attempt's marker never lands.
func TestTakeoverReplacesTheEarlierAttemptsLateWrite(t *testing.T) {
	ctx := context.Background()
	first, second := twoAttempts(t)
	all := func(string) bool { return true }
	if _, err := first.Claim(ctx, "_LOCK", holder(101)); err != nil {
		t.Fatal(err)
	}
	if err := first.Pull(ctx, all); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Claim(ctx, "_LOCK", holder(202)); err != nil {
		t.Fatal(err)
	}
	if err := second.Pull(ctx, all); err != nil {
		t.Fatal(err)
	}
	// The first attempt's upload that passed its claim check before the takeover lands now.
	f, err := os.CreateTemp(t.TempDir(), "late")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("late write of the first attempt"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := first.put(ctx, "embed/a.arrow", f); err != nil {
		t.Fatal(err)
	}
	write(t, second.Local, "embed/a.arrow", "second attempt")
	write(t, second.Local, "embed/"+pipeline.MarkerFile, "{}")
	if err := second.Push(ctx, "embed/"+pipeline.MarkerFile); err != nil {
		t.Fatalf("the attempt that took over: %v", err)
	}
	var buf bytes.Buffer
	if err := second.Bucket.Read(ctx, second.Object("embed/a.arrow"), &buf); err != nil || buf.String() != "second attempt" {
		t.Errorf("embed/a.arrow holds %q (%v), want the second attempt's", buf.String(), err)
	}
	// The first attempt's own marker is refused: it no longer holds the claim.
	write(t, first.Local, "embed/"+pipeline.MarkerFile, "{\"by\": 1}")
	if err := first.commit(ctx, "embed/"+pipeline.MarkerFile, map[string]bool{"embed/a.arrow": true}); err == nil || !strings.Contains(err.Error(), "another attempt took over") {
		t.Errorf("the first attempt's marker after the takeover: %v", err)
	}
}
