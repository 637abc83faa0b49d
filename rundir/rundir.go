// Package rundir keeps a run directory in Cloud Storage (--run-dir gs://bucket/prefix): the
// stages work on a local working copy, and Dir, the engine's pipeline.Remote, pulls what a
// process needs before the run and uploads each stage's files, object by object, then its
// marker object last. A stage, or a shard's part of it, is done only once its marker object
// exists; an upload cut short leaves none, and a resumed run redoes it.
package rundir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"connectome/atomicfile"
	"connectome/pipeline"
)

// ObjectInfo is one listed object.
type ObjectInfo struct {
	Name   string
	Size   int64
	CRC32C uint32
}

// Bucket is the part of an object store a remote run directory needs. GCSBucket is the real
// one (Cloud Storage and fake-gcs-server alike).
type Bucket interface {
	// List returns every object whose name starts with prefix.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Read copies the object's content to w; a missing object wraps ErrNotFound.
	Read(ctx context.Context, name string, w io.Writer) error
	// Write stores r as the object name: all of it, or, on error, nothing.
	Write(ctx context.Context, name string, r io.Reader) error
	// Delete removes the object; a missing one is no error.
	Delete(ctx context.Context, name string) error
}

// ErrNotFound reports a missing object.
var ErrNotFound = errors.New("object not found")

// URL is a parsed gs://bucket/prefix.
type URL struct{ Bucket, Prefix string }

func (u URL) String() string { return "gs://" + strings.TrimSuffix(u.Bucket+"/"+u.Prefix, "/") }

// IsURL reports whether a run directory names a bucket rather than a local path.
func IsURL(s string) bool { return strings.HasPrefix(s, "gs://") }

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// ParseURL checks gs://bucket[/prefix]. The prefix's segments must be plain names: no empty,
// "." or ".." segments, which object stores allow but which a local mirror cannot hold.
func ParseURL(s string) (URL, error) {
	rest, ok := strings.CutPrefix(s, "gs://")
	if !ok {
		return URL{}, fmt.Errorf("run dir %q: want gs://bucket/prefix", s)
	}
	b, p, _ := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	if !bucketName.MatchString(b) || strings.Contains(b, "..") {
		return URL{}, fmt.Errorf("run dir %q: bad bucket name %q", s, b)
	}
	if p != "" {
		if err := checkName(p); err != nil {
			return URL{}, fmt.Errorf("run dir %q: %w", s, err)
		}
	}
	return URL{Bucket: b, Prefix: p}, nil
}

// checkName refuses object names (and name parts) that cannot map to a local path one to
// one, or that Cloud Storage refuses.
func checkName(n string) error {
	if n == "" || len(n) > 1024-64 || !utf8.ValidString(n) || strings.ContainsAny(n, "\r\n\\\x00") {
		return fmt.Errorf("object name %q: empty, too long, not UTF-8, or with a control character or backslash", n)
	}
	for _, seg := range strings.Split(n, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("object name %q: empty, \".\" or \"..\" segment", n)
		}
	}
	return nil
}

// WorkDir is the default local working copy of a remote run directory: a directory under
// the user's cache named for the URL, so that a process restarted on the same machine finds
// its earlier files.
func WorkDir(u URL) (string, error) {
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("working copy of %s: %w (set --work-dir)", u, err)
	}
	h := sha256.Sum256([]byte(u.String()))
	return filepath.Join(c, "connectome", "runs", hex.EncodeToString(h[:8])), nil
}

// stamp is what a local file looked like when it was last pulled or pushed.
type stamp struct {
	size  int64
	mtime int64
}

// Dir is a remote run directory with its local working copy. It implements pipeline.Remote
// and is safe for concurrent use (pushes run one at a time).
type Dir struct {
	Bucket Bucket
	URL    URL
	// Local is the working copy, the runner's RunDir.
	Local string
	// Exclude names top-level directories of the working copy that are never uploaded: the
	// DICOM cache (fetch's default <run>/dicom), large and re-fetchable.
	Exclude []string
	// Parallel is how many objects move at once (default 8).
	Parallel int
	Log      *slog.Logger

	mu     sync.Mutex
	synced map[string]stamp // rel path → the local file as last synced
}

var _ pipeline.Remote = (*Dir)(nil)

func (d *Dir) object(rel string) string {
	if d.URL.Prefix == "" {
		return rel
	}
	return d.URL.Prefix + "/" + rel
}

func (d *Dir) prefix() string {
	if d.URL.Prefix == "" {
		return ""
	}
	return d.URL.Prefix + "/"
}

func (d *Dir) parallel() int {
	if d.Parallel > 0 {
		return d.Parallel
	}
	return 8
}

func (d *Dir) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

func (d *Dir) record(rel string, st stamp) {
	if d.synced == nil {
		d.synced = map[string]stamp{}
	}
	d.synced[rel] = st
}

func stampOf(fi fs.FileInfo) stamp { return stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()} }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func fileCRC(p string) (uint32, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, f); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// Pull implements pipeline.Remote. A local file that already has the object's size and
// CRC32C is kept, so a restart on the same machine downloads only what changed.
func (d *Dir) Pull(ctx context.Context, want func(rel string) bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	objs, err := d.Bucket.List(ctx, d.prefix())
	if err != nil {
		return fmt.Errorf("list %s: %w", d.URL, err)
	}
	remote := map[string]bool{}
	type job struct {
		rel string
		obj ObjectInfo
	}
	var jobs []job
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, d.prefix())
		if strings.HasSuffix(rel, "/") {
			continue // a "folder" placeholder of the console
		}
		if err := checkName(rel); err != nil {
			return fmt.Errorf("pull %s: %w", d.URL, err)
		}
		remote[rel] = true
		if want(rel) {
			jobs = append(jobs, job{rel, o})
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel())
	n := 0
	for _, j := range jobs {
		g.Go(func() error {
			p := filepath.Join(d.Local, filepath.FromSlash(j.rel))
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == j.obj.Size {
				if c, err := fileCRC(p); err == nil && c == j.obj.CRC32C {
					mu.Lock()
					d.record(j.rel, stampOf(fi))
					mu.Unlock()
					return nil
				}
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := atomicfile.Write(p, func(w io.Writer) error { return d.Bucket.Read(gctx, j.obj.Name, w) }); err != nil {
				return fmt.Errorf("download gs://%s/%s: %w", d.URL.Bucket, j.obj.Name, err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			mu.Lock()
			d.record(j.rel, stampOf(fi))
			n++
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// A local marker is only as good as its object: one whose upload never finished (or
	// whose stage has started again elsewhere) goes.
	err = filepath.WalkDir(d.Local, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || e.Name() != pipeline.MarkerFile {
			return nil
		}
		rel, rerr := filepath.Rel(d.Local, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if want(rel) && !remote[rel] {
			d.log().Info("local marker has no object: stage not done", "marker", rel)
			delete(d.synced, rel)
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check local markers: %w", err)
	}
	d.log().Info("run directory pulled", "url", d.URL.String(), "objects", len(jobs), "downloaded", n)
	return nil
}

// Invalidate implements pipeline.Remote.
func (d *Dir) Invalidate(ctx context.Context, rel string) error {
	if err := checkName(rel); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.synced, rel)
	if err := d.Bucket.Delete(ctx, d.object(rel)); err != nil {
		return fmt.Errorf("delete gs://%s/%s: %w", d.URL.Bucket, d.object(rel), err)
	}
	return nil
}

var shardDir = regexp.MustCompile(`^shard-[0-9]+-of-[0-9]+$`)

// isTemp matches atomicfile's temp names (".<name>.tmp-*"): a file being written.
func isTemp(name string) bool { return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") }

// Push implements pipeline.Remote. With a marker, objects of the marker's stage directory
// that no longer exist locally (left by an earlier attempt) are deleted before the marker
// is written, so a done stage in the bucket holds just that attempt's files.
func (d *Dir) Push(ctx context.Context, marker string) error {
	if marker != "" {
		if err := checkName(marker); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	type job struct {
		rel string
		st  stamp
	}
	var jobs []job
	local := map[string]bool{}
	err := filepath.WalkDir(d.Local, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking: a stage clearing its directory
			}
			return err
		}
		rel, rerr := filepath.Rel(d.Local, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			if !strings.Contains(rel, "/") {
				for _, x := range d.Exclude {
					if rel == x {
						return filepath.SkipDir
					}
				}
			}
			return nil
		}
		if !e.Type().IsRegular() || isTemp(e.Name()) || e.Name() == pipeline.MarkerFile {
			return nil
		}
		fi, ierr := e.Info()
		if errors.Is(ierr, fs.ErrNotExist) {
			return nil
		}
		if ierr != nil {
			return ierr
		}
		if err := checkName(rel); err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
		local[rel] = true
		st := stampOf(fi)
		if old, ok := d.synced[rel]; ok && old == st {
			return nil
		}
		jobs = append(jobs, job{rel, st})
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan working copy %s: %w", d.Local, err)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel())
	for _, j := range jobs {
		g.Go(func() error {
			err := d.upload(gctx, j.rel)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file removed after the scan (a stage clearing its dir) is not output
			}
			if err != nil {
				return err
			}
			mu.Lock()
			d.record(j.rel, j.st) // the stamp from before the read: a file changed since is sent again
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if marker == "" {
		d.log().Debug("run directory pushed", "objects", len(jobs))
		return nil
	}
	if err := d.dropStale(ctx, path.Dir(marker), local); err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(d.Local, filepath.FromSlash(marker)))
	if err != nil {
		return fmt.Errorf("marker %s: %w", marker, err)
	}
	if err := d.upload(ctx, marker); err != nil {
		return err
	}
	d.record(marker, stampOf(fi))
	d.log().Info("stage pushed", "marker", d.URL.String()+"/"+marker, "objects", len(jobs)+1)
	return nil
}

func (d *Dir) upload(ctx context.Context, rel string) error {
	f, err := os.Open(filepath.Join(d.Local, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := d.Bucket.Write(ctx, d.object(rel), f); err != nil {
		return fmt.Errorf("upload gs://%s/%s: %w", d.URL.Bucket, d.object(rel), err)
	}
	return nil
}

// dropStale deletes the objects of stage directory dir (not those of the shard directories
// inside it, which belong to other processes) that the working copy no longer has.
func (d *Dir) dropStale(ctx context.Context, dir string, local map[string]bool) error {
	objs, err := d.Bucket.List(ctx, d.object(dir)+"/")
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", d.URL, dir, err)
	}
	ownShard := shardDir.MatchString(path.Base(dir))
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, d.prefix())
		sub := strings.TrimPrefix(rel, dir+"/")
		if first, _, nested := strings.Cut(sub, "/"); nested && !ownShard && shardDir.MatchString(first) {
			continue
		}
		if local[rel] || path.Base(rel) == pipeline.MarkerFile {
			continue
		}
		if err := d.Bucket.Delete(ctx, o.Name); err != nil {
			return fmt.Errorf("delete stale gs://%s/%s: %w", d.URL.Bucket, o.Name, err)
		}
		delete(d.synced, rel)
	}
	return nil
}
