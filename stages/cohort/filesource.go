package cohort

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/dicomio"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// record is one row of a lesion or clinical file: column name → value ("" for NULL).
type record map[string]string

// readRecords reads a CSV (header row first) or, by extension .parquet/.pq, a Parquet file.
func readRecords(path string, mem memory.Allocator) ([]record, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet", ".pq":
		return readParquet(path, mem)
	default:
		return readCSV(path)
	}
}

func readCSV(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read %s header: %w", path, err)
	}
	for i := range header {
		header[i] = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff")))
	}
	var out []record
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		rec := record{}
		for i, v := range row {
			if i < len(header) {
				rec[header[i]] = strings.TrimSpace(v)
			}
		}
		out = append(out, rec)
	}
}

func readParquet(path string, mem memory.Allocator) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	tbl, err := pqarrow.ReadTable(context.Background(), f, parquet.NewReaderProperties(mem), pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 0)
	defer tr.Release()
	var out []record
	for tr.Next() {
		b := tr.RecordBatch()
		for i := 0; i < int(b.NumRows()); i++ {
			rec := record{}
			for c := 0; c < int(b.NumCols()); c++ {
				col := b.Column(c)
				v := ""
				if col.IsValid(i) {
					v = col.ValueStr(i)
				}
				rec[strings.ToLower(b.ColumnName(c))] = v
			}
			out = append(out, rec)
		}
	}
	if err := tr.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// fileLesion is one lesion row of a cohort file before it is matched to local DICOM.
type fileLesion struct {
	row    int // 1-based data row, for messages
	lesion tables.Lesion
}

// parseLesionRecords reads the lesion columns: patient_id, series_instance_uid,
// center_x_mm/center_y_mm/center_z_mm (LPS) and optionally lesion_id, sop_instance_uid (the
// key slice), study_instance_uid, study_year. Bad rows fail; the rest go on.
func parseLesionRecords(recs []record, fail func(string, error)) ([]fileLesion, error) {
	if len(recs) > 0 {
		for _, c := range []string{"patient_id", "series_instance_uid", "center_x_mm", "center_y_mm", "center_z_mm"} {
			if _, ok := recs[0][c]; !ok {
				return nil, pipeline.Haltf("lesion file has no column %q (needs patient_id, series_instance_uid, center_x_mm, center_y_mm, center_z_mm)", c)
			}
		}
	}
	var out []fileLesion
	for i, r := range recs {
		var c [3]float64
		var err error
		for a, k := range []string{"center_x_mm", "center_y_mm", "center_z_mm"} {
			if c[a], err = strconv.ParseFloat(r[k], 64); err != nil {
				break
			}
		}
		l := tables.Lesion{
			PatientID:         r["patient_id"],
			StudyInstanceUID:  r["study_instance_uid"],
			SeriesInstanceUID: r["series_instance_uid"],
			KeySOPInstanceUID: r["sop_instance_uid"],
			CenterMM:          c,
			StudyYear:         -1,
		}
		if y, err := strconv.Atoi(r["study_year"]); err == nil {
			l.StudyYear = int32(y)
		}
		l.LesionID = r["lesion_id"]
		if l.LesionID == "" {
			// Stable for the same file content: series, key slice and centre (0.001 mm).
			l.LesionID = LesionID(l.SeriesInstanceUID, fmt.Sprintf("file:%s@%.3f,%.3f,%.3f", l.KeySOPInstanceUID, c[0], c[1], c[2]))
		}
		item := l.LesionID
		switch {
		case err != nil:
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "lesion file row %d: centre is not a number: %v", i+1, err))
			continue
		case l.PatientID == "" || l.SeriesInstanceUID == "":
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "lesion file row %d: empty patient_id or series_instance_uid", i+1))
			continue
		}
		out = append(out, fileLesion{row: i + 1, lesion: l})
	}
	return dropDuplicates(out, fail), nil
}

// dropDuplicates fails every lesion id that more than one row gives, naming the rows: which
// row is meant cannot be told, and both would write the same files.
func dropDuplicates(in []fileLesion, fail func(string, error)) []fileLesion {
	rows := map[string][]int{}
	for _, f := range in {
		rows[f.lesion.LesionID] = append(rows[f.lesion.LesionID], f.row)
	}
	out := in[:0]
	for _, f := range in {
		r := rows[f.lesion.LesionID]
		switch {
		case len(r) == 1:
			out = append(out, f)
		case r[0] == f.row:
			names := make([]string, len(r))
			for i, n := range r {
				names[i] = strconv.Itoa(n)
			}
			fail(f.lesion.LesionID, pipeline.Itemf(pipeline.ClassInput, f.lesion.LesionID,
				"lesion file rows %s all have lesion_id %q: give each row its own id", strings.Join(names, ", "), f.lesion.LesionID))
		}
	}
	return out
}

// fileClinical reads optional clinical columns: from a clinical file (patient_id, age, sex,
// race, smoking, cancer_type_code, cancer_type, stage_code, stage) or the lesion file's own
// columns (also the published export's de_type, de_type_label, de_stag, de_stag_mapped). Codes
// are mapped with the NLST labels; a value that is not a code is kept as the label. A stage
// given as 0..6 (the published index) is mapped back to its AJCC code. A stage that cannot be
// read is that patient's error in bad (the first one, its row named by where(i)): the caller
// fails the patient, as the BigQuery source fails an unknown de_stag, and the rest go on.
func fileClinical(recs []record, labels *Labels, where func(i int) string) (clin map[string]tables.Clinical, bad map[string]error) {
	clin, bad = map[string]tables.Clinical{}, map[string]error{}
	for i, r := range recs {
		p := r["patient_id"]
		if p == "" || bad[p] != nil {
			continue
		}
		c, ok := clin[p]
		if !ok {
			c = tables.Clinical{PatientID: p, Age: -1}
		}
		if err := addRecord(&c, r, labels); err != nil {
			bad[p] = fmt.Errorf("%s (patient %s): %w", where(i), p, err)
			continue
		}
		clin[p] = c
	}
	return clin, bad
}

// dropBadClinical fails each patient of rows that bad holds, once, and drops its rows.
// Patients the cohort does not keep are not failed: a clinical file may list many more.
func dropBadClinical(rows []fileLesion, bad map[string]error, fail func(string, error)) []fileLesion {
	failed := map[string]bool{}
	return slices.DeleteFunc(rows, func(f fileLesion) bool {
		p := f.lesion.PatientID
		err := bad[p]
		if err != nil && !failed[p] {
			failed[p] = true
			fail(p, pipeline.Itemf(pipeline.ClassInput, p, "%w", err))
		}
		return err != nil
	})
}

// first returns the first non-empty value of keys in r.
func (r record) first(keys ...string) string {
	_, v := r.firstCol(keys...)
	return v
}

// firstCol is first with the column the value came from, for messages.
func (r record) firstCol(keys ...string) (col, v string) {
	for _, k := range keys {
		if v := r[k]; v != "" {
			return k, v
		}
	}
	return "", ""
}

// labelOf maps a code with m; a value that is not a code is kept as the label.
func labelOf(m map[string]string, v string) string {
	if l, ok := m[v]; ok {
		return l
	}
	return v
}

// addRecord sets the clinical fields that record r has a value for.
func addRecord(c *tables.Clinical, r record, labels *Labels) error {
	if v := r.first("age"); v != "" {
		c.Age = parseAge(v)
	}
	if v := r.first("sex", "gender"); v != "" {
		c.Sex = labelOf(labels.Sex, v)
	}
	if v := r.first("race"); v != "" {
		c.Race = labelOf(labels.Race, v)
	}
	if v := r.first("smoking", "cigsmok"); v != "" {
		c.Smoking = labelOf(labels.Smoking, v)
	}
	if v := r.first("cancer_type_code", "de_type"); v != "" {
		c.CancerTypeCode = v
		c.CancerType = labels.CancerType[v]
	}
	if v := r.first("cancer_type", "de_type_label"); v != "" {
		c.CancerType = v
	}
	return addStage(c, r, labels)
}

// addStage sets the stage from an AJCC code (stage_code, de_stag), else from a stage label,
// an AJCC code or the published index 0..6 (stage, de_stag_mapped).
func addStage(c *tables.Clinical, r record, labels *Labels) error {
	if col, v := r.firstCol("stage_code", "de_stag"); v != "" {
		s, ok := labels.Stage[v]
		if !ok {
			return fmt.Errorf("%s %q is not an AJCC stage code (known: configs/nlst-labels.yaml)", col, v)
		}
		c.StageCode, c.Stage = v, s.Label
		return nil
	}
	col, v := r.firstCol("stage", "de_stag_mapped")
	if v == "" {
		return nil
	}
	if s, ok := labels.Stage[v]; ok { // an AJCC code, as the report's --clinical file allows
		c.StageCode, c.Stage = v, s.Label
		return nil
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		c.Stage = v
		return nil
	}
	code, ok := labels.stageByIndex(i)
	if !ok {
		return fmt.Errorf("%s %q is neither a stage label nor the published index 0..6", col, v)
	}
	c.StageCode, c.Stage = code, labels.Stage[code].Label
	return nil
}

// filePolicy applies the policy to the file's lesions: all-lesions keeps every row,
// published-2026 keeps patients with exactly one row (§6.1 step 5: the file's rows are the
// records), one-lesion-per-patient picks a series per patient like the BigQuery source.
func filePolicy(policy string, in []fileLesion) []fileLesion {
	switch policy {
	case PolicyPublished2026:
		n := map[string]int{}
		for _, f := range in {
			n[f.lesion.PatientID]++
		}
		return slices.DeleteFunc(slices.Clone(in), func(f fileLesion) bool { return n[f.lesion.PatientID] != 1 })
	case PolicyOneLesionPerPatient:
		ls := make([]tables.Lesion, len(in))
		for i, f := range in {
			ls[i] = f.lesion
		}
		kept, _ := oneLesionPerPatient(ls)
		keep := map[string]bool{}
		for _, l := range kept {
			keep[l.LesionID] = true
		}
		return slices.DeleteFunc(slices.Clone(in), func(f fileLesion) bool { return !keep[f.lesion.LesionID] })
	}
	return in
}

// fromFile reads the cohort from a lesion file (and optional clinical file) and a local
// DICOM folder.
func (st *Stage) fromFile(ctx context.Context, sc *pipeline.Context) (*result, error) {
	labels, err := LoadLabels()
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	recs, err := readRecords(st.s.File, memory.DefaultAllocator)
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	if len(recs) == 0 {
		// Otherwise every later stage runs on nothing and the map comes out empty.
		return nil, pipeline.Haltf("lesion file %s has no rows (a header at most): no lesion to map", st.s.File)
	}
	rows, err := parseLesionRecords(recs, sc.Fail)
	if err != nil {
		return nil, err
	}
	rows = filePolicy(st.s.Policy, rows)
	clin, bad, err := st.fileClinicalRecords(recs, labels)
	if err != nil {
		return nil, err
	}
	rows = dropBadClinical(rows, bad, sc.Fail)
	scan, err := scanDICOMDir(ctx, st.s.DICOMDir, sc.Workers)
	if err != nil {
		return nil, err
	}
	sc.Count("dicom_files", int64(scan.files))
	sc.Log.Info("scanned DICOM folder", "dir", st.s.DICOMDir, "files", scan.files, "series", len(scan.series), "skipped", scan.skipped)
	for _, bad := range scan.unreadable {
		for _, b := range bad {
			sc.Log.Warn("unreadable DICOM file", "file", b.path, "err", b.err)
		}
	}
	seriesOf := map[string]*series{}
	for uid, ins := range scan.series {
		seriesOf[uid] = newSeries(uid, ins)
	}
	var lesions []tables.Lesion
	for _, f := range rows {
		if l, ok := st.locate(f, seriesOf, scan, sc.Fail); ok {
			lesions = append(lesions, l)
		}
	}
	sortLesions(lesions)
	res := &result{lesions: lesions, instances: instancesFor(lesions, seriesOf)}
	seen := map[string]bool{}
	for _, l := range lesions {
		if seen[l.PatientID] {
			continue
		}
		seen[l.PatientID] = true
		c, ok := clin[l.PatientID]
		if !ok {
			c = tables.Clinical{PatientID: l.PatientID, Age: -1}
		}
		res.clinical = append(res.clinical, c)
	}
	return res, nil
}

// fileClinicalRecords reads the clinical columns of the lesion file's records and of the
// clinical file, when there is one; bad is as fileClinical gives it.
func (st *Stage) fileClinicalRecords(recs []record, labels *Labels) (clin map[string]tables.Clinical, bad map[string]error, err error) {
	n := len(recs)
	if st.s.ClinicalFile != "" {
		extra, err := readRecords(st.s.ClinicalFile, memory.DefaultAllocator)
		if err != nil {
			return nil, nil, pipeline.Halt(err)
		}
		recs = append(slices.Clone(recs), extra...)
	}
	clin, bad = fileClinical(recs, labels, func(i int) string {
		if i < n {
			return fmt.Sprintf("lesion file row %d", i+1)
		}
		return fmt.Sprintf("clinical file %s row %d", st.s.ClinicalFile, i-n+1)
	})
	return clin, bad, nil
}

// wholeSeries checks that the slices of a series are evenly spaced, with none missing.
func wholeSeries(ins []*tables.Instance) error {
	rows := make([]tables.Instance, len(ins))
	for i, in := range ins {
		rows[i] = *in
	}
	ser, err := dicomio.FromInstances(rows, nil)
	if err != nil {
		return err
	}
	return ser.CheckWindow(0, len(ser.Slices)-1)
}

// locate finds the lesion of row f in the scanned folder: its series must be there, its key
// slice (given, or the slice nearest its centre) one of the series' instances; study UID and
// year come from the files when the row lacks them. ok is false when the row fails.
func (st *Stage) locate(f fileLesion, seriesOf map[string]*series, scan *scanResult, fail func(string, error)) (l tables.Lesion, ok bool) {
	l = f.lesion
	s := seriesOf[l.SeriesInstanceUID]
	if s == nil || len(s.Instances) == 0 {
		if bad := scan.badOf[l.SeriesInstanceUID]; len(bad) > 0 {
			fail(l.LesionID, pipeline.Itemf(pipeline.ClassInput, l.LesionID,
				"lesion file row %d (patient %s): series %s cannot be used: %s", f.row, l.PatientID, l.SeriesInstanceUID, describe(bad)))
			return l, false
		}
		fail(l.LesionID, pipeline.Itemf(pipeline.ClassNotFound, l.LesionID,
			"lesion file row %d (patient %s): CT series %s has no readable instance in dicom_dir %s", f.row, l.PatientID, l.SeriesInstanceUID, st.s.DICOMDir))
		return l, false
	}
	if bad := slices.Concat(scan.badOf[l.SeriesInstanceUID], scan.badNear(s.Instances)); len(bad) > 0 {
		// A broken file beside the series is most likely one of its slices: fail the lesion
		// here, naming the file, when the series is not whole without it.
		if err := wholeSeries(s.Instances); err != nil {
			fail(l.LesionID, pipeline.Itemf(pipeline.ClassInput, l.LesionID,
				"lesion file row %d (patient %s): series %s: %v; unreadable file beside it: %s", f.row, l.PatientID, l.SeriesInstanceUID, err, describe(bad)))
			return l, false
		}
	}
	if l.KeySOPInstanceUID != "" {
		if _, ok := s.rank[l.KeySOPInstanceUID]; !ok {
			fail(l.LesionID, pipeline.Itemf(pipeline.ClassNotFound, l.LesionID,
				"lesion file row %d (patient %s): key slice %s is not an instance of series %s in dicom_dir", f.row, l.PatientID, l.KeySOPInstanceUID, l.SeriesInstanceUID))
			return l, false
		}
	} else if k := s.nearest(l.CenterMM); k != nil {
		l.KeySOPInstanceUID = k.SOPInstanceUID
	}
	if info, ok := scan.study[l.SeriesInstanceUID]; ok {
		if l.StudyInstanceUID == "" {
			l.StudyInstanceUID = info.studyUID
		}
		if l.StudyYear < 0 {
			l.StudyYear = studyYear(info.studyDate)
		}
	}
	return l, true
}
