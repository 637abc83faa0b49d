// Package report is the last stage: it turns the similarity edges (and, when present, the
// cohort, clinical, agreement and QC outputs) into report/index.html, one self-contained page
// that works offline: the graph library is inlined, all data is embedded as JSON, and the
// force layout is computed here, once, so the browser never simulates the graph.
package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"

	"connectome/internal/atomicfile"
	"connectome/internal/layout"
	"connectome/pipeline"
)

// GraphLibraryFile is the graph library embedded in the binary: scripts/fetch-web-deps.sh
// (run by `make deps` and `make build`) puts it under assets/vendor/, pinned and checksummed,
// before the binary is compiled.
const GraphLibraryFile = "assets/vendor/echarts-6.1.0.min.js"

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
	// GraphLibrary, when set, is the path of a minified graph library to inline instead of
	// the one embedded in the binary (GraphLibraryFile).
	GraphLibrary string `yaml:"graph_library,omitempty" json:"graph_library,omitempty"`
	// ClinicalFile, when set, is a CSV, Parquet or Arrow IPC file of clinical data (columns:
	// ClinicalColumns) used instead of cohort/clinical.arrow: it gives runs from external
	// embeddings (`run --from similarity --embeddings`) their colours. The CLI's --clinical.
	ClinicalFile string `yaml:"clinical_file,omitempty" json:"clinical_file,omitempty"`
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
	return Settings{Title: "NLST-Sybil tumour connectome"}
}

// Validate reports settings that cannot produce a page.
func (s Settings) Validate() error {
	if s.Title == "" {
		return errors.New("title is empty")
	}
	seen := map[string]bool{}
	for _, m := range s.Models {
		if m.Name == "" {
			return errors.New("a model info entry has no name")
		}
		if seen[m.Name] {
			return fmt.Errorf("model info %q given twice", m.Name)
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
func (*Stage) Name() string { return layout.Report }

// Version implements pipeline.Stage. Bump it when the page changes for the same inputs.
// Version 2: the look-alike gallery, the compare view, keyboard use and picture export.
func (*Stage) Version() string { return "2" }

// Settings implements pipeline.Stage.
func (st *Stage) Settings() any { return st.s }

// Run reads the run's tables and writes sc.Dir/index.html.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	if err := st.s.Validate(); err != nil {
		return pipeline.Halt(err)
	}
	lib, err := loadGraphLibrary(st.s.GraphLibrary)
	if err != nil {
		return err
	}
	lay := layout.New(sc.RunDir, sc.Shard)
	in, err := readInputs(lay, st.s.ClinicalFile, sc.Log, sc.Fail)
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
	out := lay.Page()
	if err := atomicfile.Write(out, func(w io.Writer) error { return renderPage(w, data, lib) }); err != nil {
		return pipeline.Haltf("write report: %w", err)
	}
	sc.Count("nodes", int64(len(data.Nodes.ID)))
	sc.Count("models", int64(len(data.Models)))
	sc.Count("edges", int64(len(in.edges)))
	sc.Count("previews", int64(data.previewCount))
	if in.clinical != nil {
		sc.Count("clinical_nodes", int64(data.clinicalMatched))
		if data.clinicalMatched == 0 && len(data.Nodes.ID) > 0 {
			sc.Log.Warn("report: no node has clinical data: do the clinical ids match the lesion or patient ids of the map?", "example_node", data.Nodes.ID[0])
		}
	}
	if data.previewsDropped > 0 {
		sc.Count("previews_dropped", int64(data.previewsDropped))
		sc.Log.Warn("report: preview budget spent; some previews left out", "dropped", data.previewsDropped)
	}
	if data.previewsBroken > 0 {
		sc.Count("previews_broken", int64(data.previewsBroken))
		sc.Log.Warn("report: unreadable QC previews left out", "count", data.previewsBroken)
	}
	if len(in.edges) == 0 {
		sc.Log.Warn("report: the map has no edges: no model has 2 nodes with usable embeddings (see the similarity stage's warnings)", "path", out, "nodes", len(data.Nodes.ID))
	}
	sc.Log.Info("report written", "path", out, "nodes", len(data.Nodes.ID), "models", len(data.Models))
	return nil
}

// GraphLibraryEmbedded reports whether this binary carries the graph library (it does when it
// was built after `make deps` fetched it, as `make build` does).
func GraphLibraryEmbedded() bool {
	_, err := fs.Stat(assets, GraphLibraryFile)
	return err == nil
}

// loadGraphLibrary reads the graph library: the file path names, or the embedded one. A
// missing library halts the run and says how to get it.
func loadGraphLibrary(path string) ([]byte, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, pipeline.Haltf("read graph library: %w", err)
		}
		return b, nil
	}
	b, err := assets.ReadFile(GraphLibraryFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, pipeline.Haltf("this binary was built without the report's graph library (%s): build it with `make build`, which fetches it first", GraphLibraryFile)
	}
	if err != nil {
		return nil, pipeline.Haltf("read embedded graph library: %w", err)
	}
	return b, nil
}
