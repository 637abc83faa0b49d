package fetch

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"connectome/internal/atomicfile"
)

// defaultStaleTempAge is how old a temp file in the cache must be before fetch removes it.
// A live download rewrites its temp file within seconds (and gives up after its attempts),
// so an hour-old one was left by a killed process; a younger one may belong to a concurrent
// run sharing the cache and is left alone.
const defaultStaleTempAge = time.Hour

// removeStaleTemps deletes the temp files (atomicfile's ".<name>.tmp-*") directly inside the
// series directories of the plan that were last modified before now-age. Final names are
// never touched, nor is anything outside the planned series directories. It returns how many
// files were removed; a directory or file it cannot read or remove is logged and skipped,
// since a leftover temp file costs disk space, not correctness.
func removeStaleTemps(p *plan, age time.Duration, now time.Time, log *slog.Logger) int {
	dirs := map[string]bool{}
	for _, o := range p.objects {
		if o.bad == nil && o.path != "" {
			dirs[filepath.Dir(o.path)] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	cutoff := now.Add(-age)
	removed := 0
	for _, dir := range sorted {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				log.Warn("fetch: cannot list cache directory for stale temp files", "dir", dir, "err", err)
			}
			continue
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !atomicfile.IsTemp(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil || !info.ModTime().Before(cutoff) {
				continue // gone meanwhile, or young enough to be another process's live download
			}
			path := filepath.Join(dir, e.Name())
			if err := os.Remove(path); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					log.Warn("fetch: cannot remove stale temp file", "path", path, "err", err)
				}
				continue
			}
			removed++
			log.Debug("fetch: removed stale temp file", "path", path, "modified", info.ModTime())
		}
	}
	return removed
}
