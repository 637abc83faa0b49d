// A run directory in Cloud Storage (--run-dir gs://bucket/prefix): the stages work on a local
// working copy, and Dir, the engine's pipeline.Remote, pulls what a process needs before the
// run and uploads each stage's files, object by object, then its marker object last. A
// stage, or a shard's part of it, is done only once its marker object exists; an upload cut
// short leaves none, and a resumed run redoes it.

package gcp

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
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"connectome/internal/atomicfile"
	"connectome/pipeline"
)

// ObjectInfo is one listed object.
type ObjectInfo struct {
	Name       string
	Size       int64
	CRC32C     uint32
	Generation int64 // 0 when the store does not say
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

// Conditional is a Bucket whose writes and deletes can depend on an object's generation
// (Cloud Storage's preconditions). Dir uses them whenever its Bucket has them, so that two
// attempts at one part of a run never overwrite or delete each other's objects unseen.
type Conditional interface {
	// WriteIf stores r as the object name only if its generation is gen (0: only if there is
	// no such object) and returns the new generation. A failed condition wraps ErrConflict.
	WriteIf(ctx context.Context, name string, r io.Reader, gen int64) (int64, error)
	// DeleteIf removes the object only if its generation is gen; a missing object is no
	// error, a failed condition wraps ErrConflict.
	DeleteIf(ctx context.Context, name string, gen int64) error
}

// ErrConflict reports a write or delete whose generation precondition failed: someone else
// changed the object since this process read or wrote it.
var ErrConflict = errors.New("object changed by another writer")

// URL is a parsed gs://bucket/prefix.
type URL struct{ Bucket, Prefix string }

func (u URL) String() string { return "gs://" + strings.TrimSuffix(u.Bucket+"/"+u.Prefix, "/") }

// IsURL reports whether a run directory names a bucket rather than a local path.
func IsURL(s string) bool { return strings.HasPrefix(s, "gs://") }

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

	gmu   sync.Mutex
	gens  map[string]int64 // rel path → the object's generation as last listed or written
	claim *claim           // this process's claim on its part of the run directory
}

// claim is the object that names the current attempt at a part of a run directory.
type claim struct {
	rel string
	gen int64
	// tookOver: the claim replaced an earlier attempt's, which may still be writing until
	// it sees the takeover; what it writes meanwhile is this attempt's to replace.
	tookOver bool
}

var _ pipeline.Remote = (*Dir)(nil)

// Object is the object name of rel, a path relative to the run directory.
func (d *Dir) Object(rel string) string { return d.object(rel) }

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
	var jobs []pullJob
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, d.prefix())
		if strings.HasSuffix(rel, "/") {
			continue // a "folder" placeholder of the console
		}
		if err := checkName(rel); err != nil {
			return fmt.Errorf("pull %s: %w", d.URL, err)
		}
		remote[rel] = true
		d.setGen(rel, o.Generation)
		if want(rel) {
			jobs = append(jobs, pullJob{rel, o})
		}
	}
	n, err := d.download(ctx, jobs)
	if err != nil {
		return err
	}
	if err := d.dropOrphanMarkers(want, remote); err != nil {
		return fmt.Errorf("check local markers: %w", err)
	}
	d.log().Info("run directory pulled", "url", d.URL.String(), "objects", len(jobs), "downloaded", n)
	return nil
}

// pullJob is one object to bring into the working copy at rel.
type pullJob struct {
	rel string
	obj ObjectInfo
}

// download brings the objects of jobs into the working copy, in parallel, and returns how
// many it downloaded (the others were there already).
func (d *Dir) download(ctx context.Context, jobs []pullJob) (int, error) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel())
	n := 0
	for _, j := range jobs {
		g.Go(func() error {
			st, fetched, err := d.pullOne(gctx, j)
			if err != nil {
				return err
			}
			mu.Lock()
			d.record(j.rel, st)
			if fetched {
				n++
			}
			mu.Unlock()
			return nil
		})
	}
	return n, g.Wait()
}

// pullOne keeps the local copy of j when it has the object's size and CRC32C, and downloads
// the object otherwise (fetched true). It returns the local file's stamp.
func (d *Dir) pullOne(ctx context.Context, j pullJob) (st stamp, fetched bool, err error) {
	p := filepath.Join(d.Local, filepath.FromSlash(j.rel))
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == j.obj.Size {
		if c, err := fileCRC(p); err == nil && c == j.obj.CRC32C {
			return stampOf(fi), false, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return st, false, err
	}
	if err := atomicfile.Write(p, func(w io.Writer) error { return d.Bucket.Read(ctx, j.obj.Name, w) }); err != nil {
		return st, false, fmt.Errorf("download gs://%s/%s: %w", d.URL.Bucket, j.obj.Name, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return st, false, err
	}
	return stampOf(fi), true, nil
}

// dropOrphanMarkers removes the wanted local markers that have no object: a local marker is
// only as good as its object, and one whose upload never finished (or whose stage has
// started again elsewhere) goes.
func (d *Dir) dropOrphanMarkers(want func(rel string) bool, remote map[string]bool) error {
	return filepath.WalkDir(d.Local, func(p string, e fs.DirEntry, err error) error {
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
}

// Invalidate implements pipeline.Remote.
func (d *Dir) Invalidate(ctx context.Context, rel string) error {
	if err := checkName(rel); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkClaim(ctx); err != nil {
		return err
	}
	delete(d.synced, rel)
	if err := d.remove(ctx, rel, -1); err != nil {
		return fmt.Errorf("delete gs://%s/%s: %w", d.URL.Bucket, d.object(rel), err)
	}
	return nil
}

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
	if err := d.checkClaim(ctx); err != nil {
		return err
	}
	jobs, local, err := d.scan()
	if err != nil {
		return fmt.Errorf("scan working copy %s: %w", d.Local, err)
	}
	if err := d.uploadAll(ctx, jobs); err != nil {
		return err
	}
	if marker == "" {
		d.log().Debug("run directory pushed", "objects", len(jobs))
		return nil
	}
	if err := d.commit(ctx, marker, local); err != nil {
		return err
	}
	d.log().Info("stage pushed", "marker", d.URL.String()+"/"+marker, "objects", len(jobs)+1)
	return nil
}

// pushJob is one local file to upload, with its stamp before the upload reads it.
type pushJob struct {
	rel string
	st  stamp
}

// scan walks the working copy: local holds every file it would upload (markers, temp files
// and excluded directories left out), jobs those that changed since they were last synced.
func (d *Dir) scan() (jobs []pushJob, local map[string]bool, err error) {
	local = map[string]bool{}
	err = filepath.WalkDir(d.Local, func(p string, e fs.DirEntry, err error) error {
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
			if !strings.Contains(rel, "/") && slices.Contains(d.Exclude, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || atomicfile.IsTemp(e.Name()) || e.Name() == pipeline.MarkerFile {
			return nil
		}
		if !strings.Contains(rel, "/") && pipeline.IsLockFile(rel) {
			return nil // this machine's lock, not run output
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
		if old, ok := d.synced[rel]; !ok || old != st {
			jobs = append(jobs, pushJob{rel, st})
		}
		return nil
	})
	return jobs, local, err
}

// uploadAll uploads the files of jobs in parallel.
func (d *Dir) uploadAll(ctx context.Context, jobs []pushJob) error {
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
	return g.Wait()
}

// commit completes a stage in the bucket: the stale objects of the marker's directory go,
// then the marker object is written.
func (d *Dir) commit(ctx context.Context, marker string, local map[string]bool) error {
	if err := d.dropStale(ctx, path.Dir(marker), local); err != nil {
		return err
	}
	// Again before the marker: an attempt taken over during its uploads must not vouch
	// for them (the later attempt replaces what it wrote).
	if err := d.checkClaim(ctx); err != nil {
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
	return nil
}

func (d *Dir) upload(ctx context.Context, rel string) error {
	f, err := os.Open(filepath.Join(d.Local, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := d.put(ctx, rel, f); err != nil {
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
	ownShard := pipeline.IsShardDir(path.Base(dir))
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, d.prefix())
		sub := strings.TrimPrefix(rel, dir+"/")
		if first, _, nested := strings.Cut(sub, "/"); nested && !ownShard && pipeline.IsShardDir(first) {
			continue
		}
		if local[rel] || path.Base(rel) == pipeline.MarkerFile {
			continue
		}
		if err := d.remove(ctx, rel, o.Generation); err != nil {
			return fmt.Errorf("delete stale gs://%s/%s: %w", d.URL.Bucket, o.Name, err)
		}
		delete(d.synced, rel)
	}
	return nil
}
