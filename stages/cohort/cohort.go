// Package cohort is the pipeline's first stage: it finds the annotated lung tumours
// (NLST-Sybil bounding boxes stored as DICOM SR in IDC BigQuery, or a lesion file with a
// local DICOM folder), groups the boxes into 3-D lesions, applies the cohort policy and
// writes cohort/lesions.arrow, cohort/instances.arrow and cohort/clinical.arrow.
package cohort

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"cloud.google.com/go/bigquery"

	"connectome/internal/gcp"
	"connectome/internal/layout"
	"connectome/internal/sr"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// Stage is the cohort stage.
type Stage struct {
	s       Settings
	q       Querier
	objects *gcp.Downloader // the SR objects, for sr_content bucket
}

// New returns the stage. q may be nil for source file (see NewQuerier).
func New(s Settings, q Querier) *Stage { return &Stage{s: s, q: q} }

// WithObjects sets the downloader of the SR objects (sr_content bucket): the fetch stage's
// store, retries and timeout.
func (st *Stage) WithObjects(dl *gcp.Downloader) *Stage {
	st.objects = dl
	return st
}

// Name implements pipeline.Stage.
func (st *Stage) Name() string { return layout.Cohort }

// Version implements pipeline.Stage.
func (st *Stage) Version() string { return "1" }

// Settings implements pipeline.Stage: the settings less the billing project, the byte cap
// and where the SR content is read, which do not change the output (zero, they are omitted
// from the hashed YAML).
func (st *Stage) Settings() any {
	s := st.s
	s.BillingProject, s.MaxBytesBilled, s.SRContent = "", 0, ""
	return s
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
	if err := st.s.Validate(); err != nil {
		return pipeline.Haltf("settings: %w", err)
	}
	var res *result
	var err error
	switch st.s.Source {
	case SourceBigQuery:
		res, err = st.fromBigQuery(ctx, sc)
	case SourceFile:
		res, err = st.fromFile(ctx, sc)
	}
	if err != nil {
		return err
	}
	return st.write(sc, res)
}

func (st *Stage) write(sc *pipeline.Context, res *result) error {
	extra := map[string]string{
		"connectome.cohort.source": st.s.Source,
		"connectome.cohort.policy": st.s.Policy,
	}
	if st.s.Source == SourceBigQuery {
		extra["connectome.cohort.bq_project"] = st.s.BQProject
		extra["connectome.cohort.analysis_result_ids"] = strings.Join(st.s.AnalysisResultIDs, ",")
		extra["connectome.cohort.collection_id"] = st.s.CollectionID
	}
	for k, v := range res.extra {
		extra[k] = v
	}
	md := tables.Metadata(st.s.PipelineVersion, st.s.IDCRelease, sc.ConfigHash, extra)
	lay := layout.New(sc.RunDir, pipeline.Shard{})
	if err := tables.WriteLesions(lay.Lesions(), res.lesions, md); err != nil {
		return fmt.Errorf("write lesions.arrow: %w", err)
	}
	if err := tables.WriteInstances(lay.Instances(), res.instances, md); err != nil {
		return fmt.Errorf("write instances.arrow: %w", err)
	}
	if err := tables.WriteClinical(lay.Clinical(), res.clinical, md); err != nil {
		return fmt.Errorf("write clinical.arrow: %w", err)
	}
	patients := map[string]bool{}
	for _, l := range res.lesions {
		patients[l.PatientID] = true
	}
	sc.Count("lesions", int64(len(res.lesions)))
	sc.Count("patients", int64(len(patients)))
	sc.Count("instances", int64(len(res.instances)))
	sc.Log.Info("cohort written", "lesions", len(res.lesions), "patients", len(patients), "instances", len(res.instances))
	if len(res.lesions) < 2 {
		// Said here, before the later stages run: a map links lesions, so it needs two.
		sc.Log.Warn("cohort: fewer than 2 lesions (see the failures and the policy's counters): the map will have no links", "lesions", len(res.lesions))
	}
	return nil
}

// fromBigQuery reads the cohort from IDC's BigQuery tables: the SR objects of the analysis
// result, the CT instances their boxes lie on, and the clinical rows of their patients.
func (st *Stage) fromBigQuery(ctx context.Context, sc *pipeline.Context) (*result, error) {
	if st.q == nil {
		return nil, pipeline.Haltf("source bigquery needs a BigQuery client (cohort.NewQuerier)")
	}
	labels, err := LoadLabels()
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	if st.s.IDCRelease == "idc_current" {
		sc.Log.Warn("cohort: idc_release is idc_current, which is not pinned; the run records it as such and may not be reproducible")
	}
	if st.s.SRContent == SRContentBucket && st.objects == nil {
		return nil, pipeline.Haltf("cohort.sr_content %s needs a Cloud Storage client (cohort.Stage.WithObjects)", SRContentBucket)
	}
	r := &queryRunner{q: st.q, project: st.s.BQProject, release: st.s.IDCRelease, maxBytes: int64(st.s.MaxBytesBilled),
		srContent: st.s.SRContent == SRContentBigQuery, log: sc.Log, count: sc.Count}
	prsnDesc, err := st.checkClinicalSchema(ctx, r, labels)
	if err != nil {
		return nil, err
	}
	objs, matched, err := st.srObjects(ctx, r, sc)
	if err != nil {
		return nil, err
	}
	seriesOf, err := ctSeries(ctx, r, objs, st.s.CollectionID)
	if err != nil {
		return nil, err
	}
	placed := placeAll(objs, seriesOf, sc)
	patients := patientsOf(placed)
	prsnRows, err := r.run(ctx, "nlst_prsn", bigquery.QueryParameter{Name: "patient_ids", Value: patients})
	if err != nil {
		return nil, err
	}
	prsn := decodePrsn(prsnRows)
	placed = dropUnknownStages(placed, patients, prsn, labels, sc.Fail)
	lesions, err := st.applyPolicy(ctx, r, sc, placed, seriesOf, patients, prsn, labels)
	if err != nil {
		return nil, err
	}
	sortLesions(lesions)
	return &result{
		lesions:   lesions,
		clinical:  clinicalFor(lesions, prsn, labels, prsnDesc),
		instances: instancesFor(lesions, seriesOf),
		extra:     map[string]string{"connectome.cohort.analysis_result_id_matched": strings.Join(matched, ",")},
	}, nil
}

// checkClinicalSchema checks the clinical tables' columns before the big query, so that a
// renamed column stops the run early, and returns nlst_prsn's column descriptions.
func (st *Stage) checkClinicalSchema(ctx context.Context, r *queryRunner, labels *Labels) (map[string]map[string]string, error) {
	prsnDesc, err := st.checkColumns(ctx, r, labels, "nlst_prsn")
	if err != nil {
		return nil, err
	}
	if st.s.Policy == PolicyPublished2026 {
		if _, err := st.checkColumns(ctx, r, labels, "nlst_ctab"); err != nil {
			return nil, err
		}
	}
	return prsnDesc, nil
}

// srObjects queries the SR objects of the analysis result and reads their boxes; matched
// lists the analysis_result_id values the release actually holds (sorted), for the tables'
// metadata.
func (st *Stage) srObjects(ctx context.Context, r *queryRunner, sc *pipeline.Context) (objs []*srObject, matched []string, err error) {
	rows, err := r.run(ctx, "sr_objects", bigquery.QueryParameter{Name: "analysis_result_ids", Value: st.s.AnalysisResultIDs},
		bigquery.QueryParameter{Name: "collection_id", Value: st.s.CollectionID})
	if err != nil {
		return nil, nil, err
	}
	if len(rows) == 0 {
		return nil, nil, pipeline.Haltf("%s.%s.dicom_all has no SR objects in collection %q whose analysis_result_id is any of %q; "+
			"set cohort.analysis_result_ids to the name (IDC ≤ v23) or id (v24 on) the release uses",
			st.s.BQProject, st.s.IDCRelease, st.s.CollectionID, st.s.AnalysisResultIDs)
	}
	decoded := decodeSRObjects(rows)
	if st.s.SRContent == SRContentBucket {
		if decoded, err = st.readSRObjects(ctx, sc, decoded); err != nil {
			return nil, nil, err
		}
	}
	for _, d := range decoded {
		matched = append(matched, d.AnalysisResultID)
	}
	slices.Sort(matched)
	matched = slices.Compact(matched)
	sc.Log.Info("SR objects", "rows", len(rows), "analysis_result_id", matched)
	sc.Count("sr_objects", int64(len(rows)))
	return parseSRObjects(decoded, sc.Fail), matched, nil
}

// ctSeries queries the instances of the CT series the SR objects reference.
func ctSeries(ctx context.Context, r *queryRunner, objs []*srObject, collection string) (map[string]*series, error) {
	var uids []string
	for _, o := range objs {
		uids = append(uids, o.CTSeriesUID)
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	rows, err := r.run(ctx, "ct_instances", bigquery.QueryParameter{Name: "series_uids", Value: uids},
		bigquery.QueryParameter{Name: "collection_id", Value: collection})
	if err != nil {
		return nil, err
	}
	byS := map[string][]instanceRow{}
	for _, in := range decodeInstances(rows) {
		byS[in.SeriesInstanceUID] = append(byS[in.SeriesInstanceUID], in)
	}
	seriesOf := map[string]*series{}
	for uid, ins := range byS {
		seriesOf[uid] = newSeriesFromRows(uid, ins)
	}
	return seriesOf, nil
}

// placeAll places the boxes of every SR object on its CT series.
func placeAll(objs []*srObject, seriesOf map[string]*series, sc *pipeline.Context) []placedBox {
	var placed []placedBox
	nBoxes := 0
	for _, o := range objs {
		s := seriesOf[o.CTSeriesUID]
		if s == nil {
			s = newSeries(o.CTSeriesUID, nil)
		}
		nBoxes += len(o.Boxes)
		placed = append(placed, placeBoxes(o, s, sc.Fail)...)
	}
	sc.Count("boxes", int64(nBoxes))
	return placed
}

// patientsOf lists the patients of the placed boxes, sorted.
func patientsOf(placed []placedBox) []string {
	set := map[string]bool{}
	for _, b := range placed {
		set[b.obj.PatientID] = true
	}
	out := make([]string, 0, len(set)) // never nil: a query parameter
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// dropUnknownStages drops the boxes of patients whose stage code the labels do not know: an
// unknown stage code is a bad row; that patient fails, the rest goes on.
func dropUnknownStages(placed []placedBox, patients []string, prsn map[string]prsnRow, labels *Labels, fail func(string, error)) []placedBox {
	excluded := map[string]bool{}
	for _, p := range patients {
		row, ok := prsn[p]
		if !ok {
			continue
		}
		if _, err := labels.clinical(row); err != nil {
			excluded[p] = true
			fail(p, pipeline.Itemf(pipeline.ClassInput, p, "patient %s: %v", p, err))
		}
	}
	return slices.DeleteFunc(placed, func(b placedBox) bool { return excluded[b.obj.PatientID] })
}

// applyPolicy turns the placed boxes into the cohort's lesions under the policy: the
// published-2026 preset (one record per patient, from nlst_ctab), or the boxes grouped into
// lesions, all of them or one lesion per patient.
func (st *Stage) applyPolicy(ctx context.Context, r *queryRunner, sc *pipeline.Context, placed []placedBox, seriesOf map[string]*series,
	patients []string, prsn map[string]prsnRow, labels *Labels) ([]tables.Lesion, error) {
	if st.s.Policy == PolicyPublished2026 {
		ctabRows, err := r.run(ctx, "nlst_ctab", bigquery.QueryParameter{Name: "patient_ids", Value: patients})
		if err != nil {
			return nil, err
		}
		lesions, c := published2026(placed, decodeCtab(ctabRows), prsn, labels)
		sc.Log.Info("published-2026 preset", "single_box_slices", c.SingleBoxSOPs, "ctab_matched_valid_stage", c.CtabMatched,
			"single_match", c.SingleMatch, "listed_icdo3", c.ListedType, "patients_one_record", c.Patients)
		sc.Count("preset_single_box_slices", int64(c.SingleBoxSOPs))
		sc.Count("preset_ctab_matched", int64(c.CtabMatched))
		sc.Count("preset_single_match", int64(c.SingleMatch))
		sc.Count("preset_listed_icdo3", int64(c.ListedType))
		return lesions, nil
	}
	all := lesionsFromBoxes(placed, seriesOf, st.s.MaxSliceGap)
	sc.Count("lesions_grouped", int64(len(all)))
	if st.s.Policy != PolicyOneLesionPerPatient {
		return all, nil
	}
	lesions, dropped := oneLesionPerPatient(all)
	sc.Count("patients_dropped_multi_lesion", int64(dropped))
	return lesions, nil
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
