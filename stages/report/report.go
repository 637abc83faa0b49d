// Package report is the last stage: it turns the similarity edges (and, when present, the
// cohort, clinical, agreement and QC outputs) into report/index.html, one self-contained page
// that works offline: the graph library is inlined, all data is embedded as JSON, and the
// force layout is computed here, once, so the browser never simulates the graph.
package report

import (
	"connectome/repopath"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"connectome/atomicfile"
	"connectome/pipeline"
)

// DefaultGraphLibrary is where scripts/fetch-web-deps.sh puts the graph library (relative
// to the repository root).
const DefaultGraphLibrary = "third_party/web/echarts-6.1.0.min.js"

// ModelInfo describes a model for the page's model dialog. The caller fills it from the
// model registry (models.Spec has the same fields); models without info show their name.
type ModelInfo struct {
	Name        string `yaml:"name" json:"name"`
	Title       string `yaml:"title,omitempty" json:"title,omitempty"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Reference   string `yaml:"reference,omitempty" json:"reference,omitempty"` // a URL (DOI, arXiv)
	Citation    string `yaml:"citation,omitempty" json:"citation,omitempty"`
	License     string `yaml:"license,omitempty" json:"license,omitempty"`
}

// Settings decide the page. They are hashed (as JSON) into the stage's config hash.
type Settings struct {
	Title string `yaml:"title" json:"title"`
	// GraphLibrary is the path of the minified graph library; relative paths are resolved
	// against the working directory, then the repository root (the directory with go.mod
	// above the working directory), then the executable's directory and its parents.
	GraphLibrary string `yaml:"graph_library" json:"graph_library"`
	// Models, from the model registry (the caller fills them), feed the model information
	// dialog. They have a YAML name so that they count in the config hash: a changed
	// citation re-renders the page.
	Models []ModelInfo `yaml:"models,omitempty" json:"models,omitempty"`
	// PipelineVersion and IDCVersion are shown in the page footer.
	PipelineVersion string `yaml:"-" json:"pipeline_version"`
	IDCVersion      string `yaml:"-" json:"idc_version"`
}

// DefaultSettings returns the settings used when the config says nothing.
func DefaultSettings() Settings {
	return Settings{Title: "Tumour connectome", GraphLibrary: DefaultGraphLibrary}
}

// Validate reports settings that cannot produce a page.
func (s Settings) Validate() error {
	if s.Title == "" {
		return errors.New("report: title is empty")
	}
	if s.GraphLibrary == "" {
		return errors.New("report: graph_library is empty")
	}
	seen := map[string]bool{}
	for _, m := range s.Models {
		if m.Name == "" {
			return errors.New("report: a model info entry has no name")
		}
		if seen[m.Name] {
			return fmt.Errorf("report: model info %q given twice", m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

// Stage is the report stage.
type Stage struct {
	s Settings
}

// New returns the report stage with settings s.
func New(s Settings) *Stage { return &Stage{s: s} }

// Name implements pipeline.Stage.
func (*Stage) Name() string { return pipeline.StageReport }

// Version implements pipeline.Stage. Bump it when the page changes for the same inputs.
func (*Stage) Version() string { return "1" }

// Settings implements pipeline.Stage.
func (st *Stage) Settings() any { return st.s }

// Run reads the run's tables and writes sc.Dir/index.html.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Haltf("%w", err)
	}
	lib, err := loadGraphLibrary(st.s.GraphLibrary)
	if err != nil {
		return err
	}
	in, err := readInputs(sc.RunDir, sc.Log)
	if err != nil {
		return err
	}
	workers := sc.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	data, err := buildPage(ctx, st.s, in, workers)
	if err != nil {
		return err
	}
	out := filepath.Join(sc.Dir, "index.html")
	if err := atomicfile.Write(out, func(w io.Writer) error { return renderPage(w, data, lib) }); err != nil {
		return pipeline.Haltf("write report: %w", err)
	}
	sc.Count("nodes", int64(len(data.Nodes.ID)))
	sc.Count("models", int64(len(data.Models)))
	sc.Count("edges", int64(len(in.edges)))
	sc.Count("previews", int64(data.previewCount))
	if data.previewsDropped > 0 {
		sc.Count("previews_dropped", int64(data.previewsDropped))
		sc.Log.Warn("report: preview budget spent; some previews left out", "dropped", data.previewsDropped)
	}
	if data.previewsBroken > 0 {
		sc.Count("previews_broken", int64(data.previewsBroken))
		sc.Log.Warn("report: unreadable QC previews left out", "count", data.previewsBroken)
	}
	sc.Log.Info("report written", "path", out, "nodes", len(data.Nodes.ID), "models", len(data.Models))
	return nil
}

// loadGraphLibrary finds and reads the graph library; a missing file halts the run with the
// fix.
func loadGraphLibrary(path string) ([]byte, error) {
	for _, p := range libraryCandidates(path) {
		b, err := os.ReadFile(p)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, pipeline.Haltf("read graph library %s: %w", p, err)
		}
	}
	return nil, pipeline.Haltf("graph library %s not found: run `make deps` (scripts/fetch-web-deps.sh) to fetch it", path)
}

func libraryCandidates(path string) []string {
	if filepath.IsAbs(path) {
		return []string{path}
	}
	out := []string{path}
	if wd, err := os.Getwd(); err == nil {
		if root, err := repopath.Root(wd); err == nil {
			out = append(out, filepath.Join(root, path))
		}
	}
	if exe, err := os.Executable(); err == nil {
		for d := filepath.Dir(exe); ; d = filepath.Dir(d) {
			out = append(out, filepath.Join(d, path))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return out
}
