package gcp

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/api/googleapi"

	"connectome/internal/atomicfile"
	"connectome/pipeline"
)

// Kind says why a download failed, so the caller can record it as the right error class.
type Kind string

const (
	KindNotFound Kind = "not_found" // the object does not exist (404): never retried
	KindChecksum Kind = "checksum"  // content did not match the object's CRC32C or length
	KindTimeout  Kind = "timeout"   // every attempt ran past its deadline
	KindNetwork  Kind = "network"   // transport errors or HTTP 429/5xx after all retries, or another HTTP error
	KindInput    Kind = "bad_input" // the object is intact but not what the caller expected (size)
	KindDisk     Kind = "disk"      // the local cache could not be written: not the object's fault
)

// Class is the pipeline's error class of a download that failed for this reason.
func (k Kind) Class() string {
	switch k {
	case KindNotFound:
		return pipeline.ClassNotFound
	case KindChecksum:
		return pipeline.ClassChecksum
	case KindTimeout:
		return pipeline.ClassTimeout
	case KindNetwork:
		return pipeline.ClassNetwork
	case KindInput:
		return pipeline.ClassInput
	}
	return pipeline.ClassUnknown
}

// Error is a failed download after its last attempt.
type Error struct {
	Kind     Kind
	Bucket   string
	Key      string
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("download gs://%s/%s (%d attempts): %v", e.Bucket, e.Key, e.Attempts, e.Err)
}
func (e *Error) Unwrap() error { return e.Err }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Downloader copies objects into local files, verified. It is safe for concurrent use.
type Downloader struct {
	Store ObjectStore
	// Retries is how many times a failed attempt is retried (0: one attempt only).
	Retries int
	// Timeout bounds one attempt, from the request to the last byte (0: no limit).
	Timeout time.Duration
	// BackoffBase and BackoffMax shape the wait before retry n: up to BackoffBase·2^(n−1),
	// capped at BackoffMax, of which a random half is jitter (zero values: 200 ms, 10 s).
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter caps the wait a server asks for with Retry-After on 429 and 503, which
	// replaces the computed backoff (zero: 60 s). A wait that would outlast ctx's deadline
	// is not started: the download fails at once with KindTimeout.
	MaxRetryAfter time.Duration
	// OnRetry, when set, is called before each retry wait (for counters and logs).
	OnRetry func(bucket, key string, attempt int, err error)
}

// Result describes a finished download.
type Result struct {
	Bytes    int64
	Attempts int
}

// Download copies bucket/key to dst. The content is checked against the object's CRC32C and
// length while it streams into a temp file next to dst, which is renamed to dst only when
// everything matched; on failure dst is left as it was. wantSize > 0 is the size the caller
// expects (instance_size). Errors are *Error, or the context's cause when ctx ends.
func (d *Downloader) Download(ctx context.Context, bucket, key, dst string, wantSize int64) (Result, error) {
	for attempt := 1; ; attempt++ {
		n, err := d.attempt(ctx, bucket, key, dst, wantSize)
		if err == nil {
			return Result{Bytes: n, Attempts: attempt}, nil
		}
		if ctx.Err() != nil {
			return Result{Attempts: attempt}, context.Cause(ctx)
		}
		kind, retry := classify(err)
		if !retry || attempt > d.Retries {
			return Result{Attempts: attempt}, &Error{Kind: kind, Bucket: bucket, Key: key, Attempts: attempt, Err: err}
		}
		wait := d.backoff(attempt)
		if ra, ok := RetryAfter(err, time.Now()); ok {
			wait = min(ra, d.maxRetryAfter())
			// Sleeping into a deadline only to fail then helps nobody; say why now.
			if dl, has := ctx.Deadline(); has && time.Until(dl) < wait {
				return Result{Attempts: attempt}, &Error{Kind: KindTimeout, Bucket: bucket, Key: key, Attempts: attempt,
					Err: fmt.Errorf("server asks to retry after %v, past the object's deadline in %v: %w", ra, time.Until(dl).Round(time.Millisecond), err)}
			}
		}
		if d.OnRetry != nil {
			d.OnRetry(bucket, key, attempt, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Result{Attempts: attempt}, context.Cause(ctx)
		}
	}
}

func (d *Downloader) maxRetryAfter() time.Duration {
	if d.MaxRetryAfter > 0 {
		return d.MaxRetryAfter
	}
	return defaultMaxRetryAfter
}

// RetryAfter returns the wait a 429 or 503 answer in err asks for with its Retry-After
// header (delay-seconds or an HTTP-date, relative to now; a past date is 0). ok is false
// when err carries no such answer or the header is absent or malformed. The storage client
// returns reads' and metadata calls' HTTP errors as *googleapi.Error with the response
// headers, so the header is reachable for both.
func RetryAfter(err error, now time.Time) (wait time.Duration, ok bool) {
	var ge *googleapi.Error
	if !errors.As(err, &ge) || (ge.Code != 429 && ge.Code != 503) || ge.Header == nil {
		return 0, false
	}
	return parseRetryAfter(ge.Header.Get("Retry-After"), now)
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Beyond any cap anyway; avoids overflowing Duration.
		if secs > maxRetryAfterSeconds {
			secs = maxRetryAfterSeconds
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// maxRetryAfterSeconds bounds a parsed delay (a day): far above any sane cap, far below overflow.
const maxRetryAfterSeconds = 86400

func (d *Downloader) backoff(attempt int) time.Duration {
	base, maxWait := d.BackoffBase, d.BackoffMax
	if base <= 0 {
		base = defaultBackoffBase
	}
	if maxWait <= 0 {
		maxWait = defaultBackoffMax
	}
	w := maxWait
	if attempt < 31 && base<<(attempt-1) < maxWait {
		w = base << (attempt - 1)
	}
	// Half fixed, half random: spreads the retries of a 32-wide pool that all hit the same
	// 503 burst, yet never retries at once.
	half := w / 2
	return half + time.Duration(rand.Int64N(int64(w-half)+1))
}

// errAttemptTimeout is the cause of an attempt's context when its deadline passes.
var errAttemptTimeout = errors.New("attempt deadline exceeded")

// sourceError marks an error that came from reading the object, not from writing the file.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

type checksumError struct{ msg string }

func (e *checksumError) Error() string { return e.msg }

type sizeError struct{ msg string }

func (e *sizeError) Error() string { return e.msg }

type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return "attempt deadline exceeded: " + e.err.Error() }
func (e *timeoutError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

func (d *Downloader) attempt(ctx context.Context, bucket, key, dst string, wantSize int64) (n int64, err error) {
	actx := ctx
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, d.Timeout, errAttemptTimeout)
		defer cancel()
	}
	defer func() {
		// Whatever the error looks like (url.Error, io.ErrUnexpectedEOF, ...), a passed
		// attempt deadline is the reason.
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errAttemptTimeout) {
			err = &timeoutError{err}
		}
	}()
	obj, err := d.Store.Open(actx, bucket, key)
	if err != nil {
		return 0, &sourceError{err}
	}
	defer obj.Body.Close()
	if !obj.HasCRC32C {
		return 0, &checksumError{"the store gives no CRC32C to verify against"}
	}
	err = atomicfile.Write(dst, func(w io.Writer) error {
		h := crc32.New(castagnoli)
		var cerr error
		n, cerr = io.Copy(io.MultiWriter(w, h), sourceReader{obj.Body})
		if cerr != nil {
			return cerr
		}
		if obj.Size >= 0 && n != obj.Size {
			return &checksumError{fmt.Sprintf("got %d bytes, object has %d", n, obj.Size)}
		}
		if got := h.Sum32(); got != obj.CRC32C {
			return &checksumError{fmt.Sprintf("crc32c %08x, object metadata says %08x", got, obj.CRC32C)}
		}
		// Verified content of another length means the table is wrong, not the transfer.
		if wantSize > 0 && n != wantSize {
			return &sizeError{fmt.Sprintf("object has %d bytes, instance_size says %d", n, wantSize)}
		}
		return nil
	})
	return n, err
}

// classify maps an attempt's error to a kind and whether another attempt may help.
func classify(err error) (Kind, bool) {
	var (
		ce  *checksumError
		se  *sizeError
		te  *timeoutError
		ge  *googleapi.Error
		src *sourceError
	)
	switch {
	case errors.As(err, &te):
		return KindTimeout, true
	case errors.As(err, &ce):
		return KindChecksum, true
	case errors.As(err, &se):
		return KindInput, false
	case errors.Is(err, ErrNotFound):
		return KindNotFound, false
	case errors.As(err, &ge):
		if ge.Code == 404 {
			return KindNotFound, false
		}
		return KindNetwork, ge.Code == 408 || ge.Code == 429 || ge.Code >= 500
	case errors.As(err, &src):
		// The storage client's own CRC check can fire before ours does.
		if strings.Contains(err.Error(), "bad CRC") {
			return KindChecksum, true
		}
		return KindNetwork, transient(src.err)
	}
	// Not from the object: creating, writing, syncing or renaming the local file failed.
	return KindDisk, false
}

// transient reports whether a transport error is worth another attempt. Unknown errors are
// retried too: attempts are bounded, and the wire produces odd errors under load.
func transient(err error) bool {
	var (
		ne *net.OpError
		ue *url.Error
	)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne), errors.As(err, &ue):
		return true
	case errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// IsDiskFull reports whether err says the local disk is full.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
