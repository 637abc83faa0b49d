package report

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// inputs is everything the page is built from. Only edges are required; the rest is nil
// when its stage did not run (for example `run --from similarity --embeddings FILE`).
type inputs struct {
	edges   []tables.Edge
	lesions []tables.Lesion
	// clinical is cohort/clinical.arrow by patient, or the rows of the settings' clinical
	// file (which then replaces it) by lesion or patient.
	clinical  *clinicalIndex
	agreement []tables.Agreement
	// previews gives the places preprocess may have put a lesion's QC preview.
	previews func(lesionID string) []string
}

// readInputs reads the run's tables, and clinicalFile instead of the cohort's clinical table
// when it is set (its bad rows go to fail). A missing optional table is logged, not an error;
// a table that exists but cannot be read halts the run (a schema mismatch is a bug upstream).
func readInputs(lay layout.Run, clinicalFile string, log *slog.Logger, fail func(item string, err error)) (*inputs, error) {
	in := &inputs{previews: lay.QCPreviews}
	edges, _, err := tables.ReadEdges(lay.Edges())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, pipeline.Haltf("report needs %s: run the similarity stage first", lay.Edges())
		}
		return nil, pipeline.Haltf("read %s: %w", lay.Edges(), err)
	}
	in.edges = edges

	optional := func(p string, read func(string) error) error {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			log.Info("report: optional input absent", "path", p)
			return nil
		}
		if err := read(p); err != nil {
			return pipeline.Haltf("read %s: %w", p, err)
		}
		return nil
	}
	if err := optional(lay.Lesions(), func(p string) (err error) {
		in.lesions, _, err = tables.ReadLesions(p)
		return err
	}); err != nil {
		return nil, err
	}
	if clinicalFile != "" {
		log.Info("report: clinical data from a file", "path", clinicalFile)
		if in.clinical, err = readClinicalFile(clinicalFile, fail); err != nil {
			return nil, err
		}
	} else if err := optional(lay.Clinical(), func(p string) error {
		rows, _, err := tables.ReadClinical(p)
		in.clinical = clinicalByPatient(rows)
		return err
	}); err != nil {
		return nil, err
	}
	if err := optional(lay.Agreement(), func(p string) (err error) {
		in.agreement, _, err = tables.ReadAgreement(p)
		return err
	}); err != nil {
		return nil, err
	}
	return in, nil
}
