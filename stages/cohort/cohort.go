// Package cohort is the pipeline's first stage: it finds the annotated lung tumours
// (NLST-Sybil bounding boxes stored as DICOM SR in IDC BigQuery, or a lesion file with a
// local DICOM folder), groups the boxes into 3-D lesions, applies the cohort policy and
// writes cohort/lesions.arrow, cohort/instances.arrow and cohort/clinical.arrow.
package cohort

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"cloud.google.com/go/bigquery"

	"connectome/arrowio"
	"connectome/pipeline"
	"connectome/sr"
	"connectome/tables"
)

// Stage is the cohort stage.
type Stage struct {
	s Settings
	q Querier
}

// New returns the stage. q may be nil for source file (see NewQuerier).
func New(s Settings, q Querier) *Stage { return &Stage{s: s, q: q} }

// Name implements pipeline.Stage.
func (st *Stage) Name() string { return pipeline.StageCohort }

// Version implements pipeline.Stage.
func (st *Stage) Version() string { return "1" }

// hashedSettings are the settings that decide the output; billing project and byte cap do
// not, so they stay out of the config hash.
type hashedSettings struct {
	Source           string `yaml:"source"`
	Policy           string `yaml:"policy"`
	IDCRelease       string `yaml:"idc_release"`
	BQProject        string `yaml:"bq_project"`
	AnalysisResultID string `yaml:"analysis_result_id"`
	MaxSliceGap      int    `yaml:"max_slice_gap"`
	File             string `yaml:"file,omitempty"`
	ClinicalFile     string `yaml:"clinical_file,omitempty"`
	DICOMDir         string `yaml:"dicom_dir,omitempty"`
}

// Settings implements pipeline.Stage.
func (st *Stage) Settings() any {
	s := st.s
	return hashedSettings{s.Source, s.Policy, s.IDCRelease, s.BQProject, s.AnalysisResultID, s.MaxSliceGap, s.File, s.ClinicalFile, s.DICOMDir}
}

// env is what Run needs from the engine's Context.
type env struct {
	dir, configHash string
	workers         int
	log             *slog.Logger
	fail            func(item string, err error)
	count           func(name string, n int64)
}

// result is the stage's three tables.
type result struct {
	lesions   []tables.Lesion
	instances []tables.Instance
	clinical  []tables.Clinical
	extra     map[string]string // table metadata
}

// Run implements pipeline.Stage.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	e := env{dir: sc.Dir, configHash: sc.ConfigHash, workers: sc.Workers, log: sc.Log, fail: sc.Fail, count: sc.Count}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.workers < 1 {
		e.workers = 1
	}
	if err := st.s.Validate(); err != nil {
		return pipeline.Haltf("%w", err)
	}
	var res *result
	var err error
	switch st.s.Source {
	case SourceBigQuery:
		res, err = st.fromBigQuery(ctx, e)
	case SourceFile:
		res, err = st.fromFile(ctx, e)
	}
	if err != nil {
		return err
	}
	return st.write(e, res)
}

func (st *Stage) write(e env, res *result) error {
	extra := map[string]string{
		"connectome.cohort.source": st.s.Source,
		"connectome.cohort.policy": st.s.Policy,
	}
	if st.s.Source == SourceBigQuery {
		extra["connectome.cohort.bq_project"] = st.s.BQProject
		extra["connectome.cohort.analysis_result_id"] = st.s.AnalysisResultID
	}
	for k, v := range res.extra {
		extra[k] = v
	}
	md := arrowio.Metadata(st.s.PipelineVersion, st.s.IDCRelease, e.configHash, extra)
	if err := tables.WriteLesions(filepath.Join(e.dir, "lesions.arrow"), res.lesions, md); err != nil {
		return fmt.Errorf("write lesions.arrow: %w", err)
	}
	if err := tables.WriteInstances(filepath.Join(e.dir, "instances.arrow"), res.instances, md); err != nil {
		return fmt.Errorf("write instances.arrow: %w", err)
	}
	if err := tables.WriteClinical(filepath.Join(e.dir, "clinical.arrow"), res.clinical, md); err != nil {
		return fmt.Errorf("write clinical.arrow: %w", err)
	}
	patients := map[string]bool{}
	for _, l := range res.lesions {
		patients[l.PatientID] = true
	}
	e.count("lesions", int64(len(res.lesions)))
	e.count("patients", int64(len(patients)))
	e.count("instances", int64(len(res.instances)))
	e.log.Info("cohort written", "lesions", len(res.lesions), "patients", len(patients), "instances", len(res.instances))
	return nil
}

func (st *Stage) fromBigQuery(ctx context.Context, e env) (*result, error) {
	if st.q == nil {
		return nil, pipeline.Haltf("cohort: source bigquery needs a BigQuery client (cohort.NewQuerier)")
	}
	labels, err := LoadLabels()
	if err != nil {
		return nil, pipeline.Haltf("%w", err)
	}
	if st.s.IDCRelease == "idc_current" {
		e.log.Warn("cohort: idc_release is idc_current, which is not pinned; the run records it as such and may not be reproducible")
	}
	r := &queryRunner{q: st.q, project: st.s.BQProject, release: st.s.IDCRelease, maxBytes: int64(st.s.MaxBytesBilled), log: e.log, count: e.count}
	preset := st.s.Policy == PolicyPublished2026

	// Clinical schema first: a renamed column should stop the run before the big query.
	prsnDesc, err := st.checkColumns(ctx, r, labels, "nlst_prsn")
	if err != nil {
		return nil, err
	}
	if preset {
		if _, err := st.checkColumns(ctx, r, labels, "nlst_ctab"); err != nil {
			return nil, err
		}
	}

	rows, err := r.run(ctx, "sr_objects", bigquery.QueryParameter{Name: "analysis_result_id", Value: st.s.AnalysisResultID})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, pipeline.Haltf("cohort: %s.%s.dicom_all has no SR objects with analysis_result_id %q",
			st.s.BQProject, st.s.IDCRelease, st.s.AnalysisResultID)
	}
	objs := parseSRObjects(decodeSRObjects(rows), e.fail)
	e.count("sr_objects", int64(len(rows)))
	var seriesUIDs []string
	for _, o := range objs {
		seriesUIDs = append(seriesUIDs, o.CTSeriesUID)
	}
	slices.Sort(seriesUIDs)
	seriesUIDs = slices.Compact(seriesUIDs)

	instRows, err := r.run(ctx, "ct_instances", bigquery.QueryParameter{Name: "series_uids", Value: seriesUIDs})
	if err != nil {
		return nil, err
	}
	byS := map[string][]instanceRow{}
	for _, in := range decodeInstances(instRows) {
		byS[in.SeriesInstanceUID] = append(byS[in.SeriesInstanceUID], in)
	}
	seriesOf := map[string]*series{}
	for uid, ins := range byS {
		seriesOf[uid] = newSeriesFromRows(uid, ins)
	}

	var placed []placedBox
	nBoxes := 0
	for _, o := range objs {
		s := seriesOf[o.CTSeriesUID]
		if s == nil {
			s = newSeries(o.CTSeriesUID, nil)
		}
		nBoxes += len(o.Boxes)
		placed = append(placed, placeBoxes(o, s, e.fail)...)
	}
	e.count("boxes", int64(nBoxes))

	patientSet := map[string]bool{}
	for _, b := range placed {
		patientSet[b.obj.PatientID] = true
	}
	patients := make([]string, 0, len(patientSet))
	for p := range patientSet {
		patients = append(patients, p)
	}
	slices.Sort(patients)
	prsnRows, err := r.run(ctx, "nlst_prsn", bigquery.QueryParameter{Name: "patient_ids", Value: patients})
	if err != nil {
		return nil, err
	}
	prsn := decodePrsn(prsnRows)
	// An unknown stage code is a bad row: that patient fails, the rest goes on.
	excluded := map[string]bool{}
	for _, p := range patients {
		row, ok := prsn[p]
		if !ok {
			continue
		}
		if _, err := labels.clinical(row); err != nil {
			excluded[p] = true
			e.fail(p, pipeline.Itemf(pipeline.ClassInput, p, "patient %s: %v", p, err))
		}
	}
	placed = slices.DeleteFunc(placed, func(b placedBox) bool { return excluded[b.obj.PatientID] })

	var lesions []tables.Lesion
	switch st.s.Policy {
	case PolicyPublished2026:
		ctabRows, err := r.run(ctx, "nlst_ctab", bigquery.QueryParameter{Name: "patient_ids", Value: patients})
		if err != nil {
			return nil, err
		}
		var c presetCounts
		lesions, c = published2026(placed, decodeCtab(ctabRows), prsn, labels)
		e.log.Info("published-2026 preset", "single_box_slices", c.SingleBoxSOPs, "ctab_matched_valid_stage", c.CtabMatched,
			"single_match", c.SingleMatch, "listed_icdo3", c.ListedType, "patients_one_record", c.Patients)
		e.count("preset_single_box_slices", int64(c.SingleBoxSOPs))
		e.count("preset_ctab_matched", int64(c.CtabMatched))
		e.count("preset_single_match", int64(c.SingleMatch))
		e.count("preset_listed_icdo3", int64(c.ListedType))
	default:
		all := lesionsFromBoxes(placed, seriesOf, st.s.MaxSliceGap)
		e.count("lesions_grouped", int64(len(all)))
		lesions = all
		if st.s.Policy == PolicyOneLesionPerPatient {
			var dropped int
			lesions, dropped = oneLesionPerPatient(all)
			e.count("patients_dropped_multi_lesion", int64(dropped))
		}
	}
	sortLesions(lesions)

	res := &result{lesions: lesions}
	res.clinical = clinicalFor(lesions, prsn, labels, prsnDesc)
	res.instances = instancesFor(lesions, seriesOf)
	return res, nil
}

// parseSRObjects turns SR rows into objects with their boxes; an SR that cannot be read
// (wrong template, unreadable content, no referenced series) fails as a whole.
func parseSRObjects(rows []srObjectRow, fail func(string, error)) []*srObject {
	var out []*srObject
	for _, r := range rows {
		item := r.SRSOPUID
		if r.TemplateID != "1500" {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "patient %s: SR %s has content template %q, want TID 1500", r.PatientID, r.SRSOPUID, r.TemplateID))
			continue
		}
		ev, err := sr.Evidence([]byte(r.EvidenceJSON))
		if err != nil || len(ev) == 0 {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "patient %s: SR %s references no CT series in CurrentRequestedProcedureEvidenceSequence (%v)", r.PatientID, r.SRSOPUID, err))
			continue
		}
		boxes, err := sr.ParseJSON([]byte(r.ContentJSON))
		if err != nil {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "patient %s: SR %s: %v", r.PatientID, r.SRSOPUID, err))
			continue
		}
		out = append(out, &srObject{PatientID: r.PatientID, StudyUID: r.StudyUID, StudyDate: r.StudyDate,
			SRSeriesUID: r.SRSeriesUID, SRSOPUID: r.SRSOPUID, CTSeriesUID: ev[0], Boxes: boxes})
	}
	return out
}

// newSeriesFromRows builds a series from query rows, remembering which geometry columns
// were NULL so that a box on such a slice fails with that reason.
func newSeriesFromRows(uid string, rows []instanceRow) *series {
	ins := make([]*tables.Instance, 0, len(rows))
	missing := map[string][]string{}
	for i := range rows {
		if len(rows[i].Missing) > 0 {
			missing[rows[i].SOPInstanceUID] = rows[i].Missing
		}
		ins = append(ins, &rows[i].Instance)
	}
	s := newSeries(uid, ins)
	s.missing = missing
	// An instance with NULL geometry cannot be ordered; keep it out of the order even
	// if its zero values happen to look valid.
	s.Instances = slices.DeleteFunc(s.Instances, func(in *tables.Instance) bool { return len(missing[in.SOPInstanceUID]) > 0 })
	return s.reindex()
}

// lesionsFromBoxes groups the boxes of each series into lesions.
func lesionsFromBoxes(placed []placedBox, seriesOf map[string]*series, maxGap int) []tables.Lesion {
	bySeries := map[string][]placedBox{}
	var order []string
	for _, b := range placed {
		k := b.obj.CTSeriesUID
		if _, ok := bySeries[k]; !ok {
			order = append(order, k)
		}
		bySeries[k] = append(bySeries[k], b)
	}
	var out []tables.Lesion
	for _, uid := range order {
		for _, g := range groupBoxes(bySeries[uid], maxGap) {
			out = append(out, lesionFromGroup(seriesOf[uid], g))
		}
	}
	return out
}

func sortLesions(ls []tables.Lesion) {
	slices.SortFunc(ls, func(a, b tables.Lesion) int {
		return cmp.Or(cmp.Compare(a.PatientID, b.PatientID), cmp.Compare(a.StudyYear, b.StudyYear),
			cmp.Compare(a.SeriesInstanceUID, b.SeriesInstanceUID), cmp.Compare(a.CenterMM[2], b.CenterMM[2]), cmp.Compare(a.LesionID, b.LesionID))
	})
}

// clinicalFor returns one clinical row per patient of the lesions; a patient without an
// nlst_prsn row gets age -1 and empty labels. Codes the mapping lacks fall back to IDC's
// column_metadata description.
func clinicalFor(lesions []tables.Lesion, prsn map[string]prsnRow, labels *Labels, desc map[string]map[string]string) []tables.Clinical {
	var out []tables.Clinical
	seen := map[string]bool{}
	for _, l := range lesions {
		if seen[l.PatientID] {
			continue
		}
		seen[l.PatientID] = true
		row, ok := prsn[l.PatientID]
		if !ok {
			out = append(out, tables.Clinical{PatientID: l.PatientID, Age: -1})
			continue
		}
		c, _ := labels.clinical(row) // unknown stage codes were excluded before
		if c.CancerType == "" {
			c.CancerType = desc["de_type"][row.DeType]
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b tables.Clinical) int { return cmp.Compare(a.PatientID, b.PatientID) })
	return out
}

// instancesFor lists every instance (with usable geometry) of each series a lesion uses,
// in slice order.
func instancesFor(lesions []tables.Lesion, seriesOf map[string]*series) []tables.Instance {
	var uids []string
	for _, l := range lesions {
		uids = append(uids, l.SeriesInstanceUID)
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	var out []tables.Instance
	for _, uid := range uids {
		if s := seriesOf[uid]; s != nil {
			for _, in := range s.Instances {
				out = append(out, *in)
			}
		}
	}
	return out
}
