// Package gcp holds the Cloud Storage clients. It reads objects from Cloud Storage (IDC's
// public buckets, or an emulator) into a local cache: anonymous client, per-attempt
// deadlines, retries with backoff and jitter, CRC32C verified while streaming, and an atomic
// rename so a partial object never has its final name. And it keeps a run directory in a
// bucket (Dir, rundir.go).
package gcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

// Object is an open object: its content and the metadata to verify it against.
type Object struct {
	Body io.ReadCloser
	// Size is the object's length in bytes, or -1 when the server did not say.
	Size int64
	// CRC32C is the object's stored CRC32C (Castagnoli); HasCRC32C is false when the store
	// has none to offer, and then the content cannot be verified.
	CRC32C    uint32
	HasCRC32C bool
}

// ObjectStore is the part of an object store that fetch needs. The real client (GCSStore)
// serves both Cloud Storage and fake-gcs-server.
type ObjectStore interface {
	// Open starts reading bucket/key. A missing object is an error that wraps ErrNotFound.
	Open(ctx context.Context, bucket, key string) (*Object, error)
	Close() error
}

// ErrNotFound reports a missing object (HTTP 404).
var ErrNotFound = errors.New("object not found")

// GCSStore is an ObjectStore backed by cloud.google.com/go/storage.
type GCSStore struct {
	c  *storage.Client
	tr *http.Transport
}

// NewGCSClient returns an anonymous Cloud Storage client. endpoint, when set, is the base URL of
// an emulator or proxy ("http://127.0.0.1:4443" or the full ".../storage/v1/"); when empty the
// client uses STORAGE_EMULATOR_HOST if set, else storage.googleapis.com.
//
// The client's own retries are turned off: the Downloader retries whole objects with its own
// backoff, deadline and checksum, and two nested retry loops would multiply the attempts.
func NewGCSClient(ctx context.Context, endpoint string) (ObjectStore, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Many small objects from one host: keep enough idle connections for the whole pool,
	// or every request beyond the default 2 pays a new TCP (and TLS) handshake.
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	tr.ResponseHeaderTimeout = 0
	opts := []option.ClientOption{
		option.WithoutAuthentication(),
		option.WithHTTPClient(&http.Client{Transport: tr}),
	}
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(JSONEndpoint(endpoint)))
	}
	c, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create storage client: %w", err)
	}
	c.SetRetry(storage.WithPolicy(storage.RetryNever))
	return &GCSStore{c: c, tr: tr}, nil
}

// JSONEndpoint turns a server base URL into the JSON API endpoint the client option wants.
func JSONEndpoint(endpoint string) string {
	e := strings.TrimRight(endpoint, "/")
	if !strings.Contains(e, "://") {
		e = "http://" + e
	}
	if !strings.HasSuffix(e, "/storage/v1") {
		e += "/storage/v1"
	}
	return e + "/"
}

// Open implements ObjectStore. The CRC32C comes from the response's X-Goog-Hash header, which
// carries the object's stored checksum; only when it is absent (or zero, indistinguishable)
// is the object's metadata fetched, and then the read is pinned to that generation so the
// content and the checksum belong to the same version.
func (g *GCSStore) Open(ctx context.Context, bucket, key string) (*Object, error) {
	oh := g.c.Bucket(bucket).Object(key)
	r, err := oh.NewReader(ctx)
	if err != nil {
		return nil, mapNotFound(err)
	}
	if r.Attrs.CRC32C != 0 {
		return &Object{Body: r, Size: r.Attrs.Size, CRC32C: r.Attrs.CRC32C, HasCRC32C: true}, nil
	}
	r.Close()
	attrs, err := oh.Attrs(ctx)
	if err != nil {
		return nil, mapNotFound(err)
	}
	r, err = oh.Generation(attrs.Generation).NewReader(ctx)
	if err != nil {
		return nil, mapNotFound(err)
	}
	// GCS keeps a crc32c for every object, so the metadata value is authoritative even when 0.
	return &Object{Body: r, Size: r.Attrs.Size, CRC32C: attrs.CRC32C, HasCRC32C: true}, nil
}

// Close releases the client.
func (g *GCSStore) Close() error {
	err := g.c.Close()
	g.tr.CloseIdleConnections()
	return err
}

func mapNotFound(err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// defaultBackoff values: the first retry waits up to 200 ms, doubling to at most 10 s.
const (
	defaultBackoffBase = 200 * time.Millisecond
	defaultBackoffMax  = 10 * time.Second
	// defaultMaxRetryAfter caps a server's Retry-After.
	defaultMaxRetryAfter = 60 * time.Second
)
