package gcp

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// GCSBucket is a Bucket on cloud.google.com/go/storage.
type GCSBucket struct{ B *storage.BucketHandle }

// List implements Bucket.
func (g GCSBucket) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "CRC32C", "Generation"}); err != nil {
		return nil, err
	}
	it := g.B.Objects(ctx, q)
	var out []ObjectInfo
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, ObjectInfo{Name: a.Name, Size: a.Size, CRC32C: a.CRC32C, Generation: a.Generation})
	}
}

// Read implements Bucket. The client checks the content against the object's CRC32C.
func (g GCSBucket) Read(ctx context.Context, name string, w io.Writer) error {
	r, err := g.B.Object(name).NewReader(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// Write implements Bucket.
func (g GCSBucket) Write(ctx context.Context, name string, r io.Reader) error {
	_, err := g.write(ctx, g.B.Object(name), r)
	return err
}

// WriteIf implements Conditional with Cloud Storage's generation preconditions.
func (g GCSBucket) WriteIf(ctx context.Context, name string, r io.Reader, gen int64) (int64, error) {
	c := storage.Conditions{DoesNotExist: true}
	if gen != 0 {
		c = storage.Conditions{GenerationMatch: gen}
	}
	return g.write(ctx, g.B.Object(name).If(c), r)
}

// write uploads r to o. A failed copy cancels the upload, so no object is finalized.
func (g GCSBucket) write(ctx context.Context, o *storage.ObjectHandle, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := o.NewWriter(ctx)
	if rs, ok := r.(io.ReadSeeker); ok {
		// The server checks the content against the CRC32C of the file as read here, so a
		// corrupted upload is refused instead of stored.
		h := crc32.New(castagnoli)
		if _, err := io.Copy(h, rs); err != nil {
			return 0, err
		}
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		w.CRC32C, w.SendCRC32C = h.Sum32(), true
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		w.Close()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, mapErr(err)
	}
	return w.Attrs().Generation, nil
}

// Delete implements Bucket.
func (g GCSBucket) Delete(ctx context.Context, name string) error {
	err := g.B.Object(name).Delete(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil
	}
	return mapErr(err)
}

// DeleteIf implements Conditional. It names the generation as well as the precondition:
// fake-gcs-server ignores ifGenerationMatch on deletes but honours the generation, and on a
// bucket without versioning either alone deletes nothing but that live generation. A
// not-found answer is then a conflict when the object exists at another generation.
func (g GCSBucket) DeleteIf(ctx context.Context, name string, gen int64) error {
	err := g.B.Object(name).Generation(gen).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx)
	if !errors.Is(err, storage.ErrObjectNotExist) {
		return mapErr(err)
	}
	a, aerr := g.B.Object(name).Attrs(ctx)
	switch {
	case errors.Is(aerr, storage.ErrObjectNotExist):
		return nil
	case aerr != nil:
		return mapErr(aerr)
	case a.Generation != gen:
		return fmt.Errorf("%w: %s is at generation %d, not %d", ErrConflict, name, a.Generation, gen)
	}
	return mapErr(err)
}

// mapErr turns the errors a user can fix into plain messages.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("bucket does not exist: %w", err)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	if errors.As(err, &ge) && (ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden) {
		return fmt.Errorf("no access (HTTP %d): check the credentials (gcloud auth application-default login, or the service account) and that they hold roles/storage.objectAdmin on the bucket: %w", ge.Code, err)
	}
	return err
}

// ClientOptions configure Open.
type ClientOptions struct {
	// Endpoint, when set, is an emulator's base URL (tests); the client is then anonymous.
	// Otherwise the client uses Application Default Credentials, or STORAGE_EMULATOR_HOST.
	Endpoint   string
	HTTPClient *http.Client
	// MaxAttempts bounds the client's tries per request (default 6).
	MaxAttempts int
}

// Open connects to the bucket of u and checks that the run directory can be listed, so that
// a missing bucket or missing rights halt the run before any work. close releases the client.
func Open(ctx context.Context, u URL, local string, co ClientOptions) (d *Dir, close func() error, err error) {
	var opts []option.ClientOption
	if co.Endpoint != "" {
		opts = append(opts, option.WithoutAuthentication(), option.WithEndpoint(JSONEndpoint(co.Endpoint)))
	}
	if co.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(co.HTTPClient))
	}
	c, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("storage client for %s: %w", u, err)
	}
	attempts := co.MaxAttempts
	if attempts <= 0 {
		attempts = 6
	}
	// Writes are retried too: an object is rewritten with the same content, and the marker
	// object, which gives the writes their meaning, only comes after them.
	c.SetRetry(storage.WithPolicy(storage.RetryAlways), storage.WithMaxAttempts(attempts))
	b := GCSBucket{B: c.Bucket(u.Bucket)}
	it := b.B.Objects(ctx, &storage.Query{Prefix: u.Prefix})
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		c.Close()
		return nil, nil, fmt.Errorf("run dir %s: %w", u, mapErr(err))
	}
	return &Dir{Bucket: b, URL: u, Local: local}, c.Close, nil
}
