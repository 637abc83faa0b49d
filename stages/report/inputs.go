package report

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"connectome/pipeline"
	"connectome/tables"
)

// inputs is everything the page is built from. Only edges are required; the rest is nil
// when its stage did not run (for example `run --from similarity --embeddings FILE`).
type inputs struct {
	edges     []tables.Edge
	lesions   []tables.Lesion
	clinical  []tables.Clinical
	agreement []tables.Agreement
	// qcDir holds preprocess's previews, qc/<lesion_id>.png; "" when absent.
	qcDir string
}

// readInputs reads the run's tables. A missing optional table is logged, not an error; a
// table that exists but cannot be read halts the run (a schema mismatch is a bug upstream).
func readInputs(runDir string, log *slog.Logger) (*inputs, error) {
	in := &inputs{}
	edgesPath := filepath.Join(runDir, pipeline.StageSimilarity, "edges.arrow")
	edges, _, err := tables.ReadEdges(edgesPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, pipeline.Haltf("report needs %s: run the similarity stage first", edgesPath)
		}
		return nil, pipeline.Haltf("read %s: %w", edgesPath, err)
	}
	in.edges = edges

	optional := func(name string, read func(string) error) error {
		p := filepath.Join(runDir, name)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			log.Info("report: optional input absent", "path", p)
			return nil
		}
		if err := read(p); err != nil {
			return pipeline.Haltf("read %s: %w", p, err)
		}
		return nil
	}
	if err := optional(filepath.Join(pipeline.StageCohort, "lesions.arrow"), func(p string) (err error) {
		in.lesions, _, err = tables.ReadLesions(p)
		return err
	}); err != nil {
		return nil, err
	}
	if err := optional(filepath.Join(pipeline.StageCohort, "clinical.arrow"), func(p string) (err error) {
		in.clinical, _, err = tables.ReadClinical(p)
		return err
	}); err != nil {
		return nil, err
	}
	if err := optional(filepath.Join(pipeline.StageSimilarity, "agreement.arrow"), func(p string) (err error) {
		in.agreement, _, err = tables.ReadAgreement(p)
		return err
	}); err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(runDir, "qc")); err == nil && st.IsDir() {
		in.qcDir = filepath.Join(runDir, "qc")
	}
	return in, nil
}
