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

	"connectome/pipeline"
	"connectome/tables"
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
				return nil, pipeline.Haltf("cohort: lesion file has no column %q (needs patient_id, series_instance_uid, center_x_mm, center_y_mm, center_z_mm)", c)
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
	return out, nil
}

// fileClinical reads optional clinical columns: from a clinical file (patient_id, age, sex,
// race, smoking, cancer_type_code, cancer_type, stage_code, stage) or the lesion file's own
// columns (also the published export's de_type, de_type_label, de_stag, de_stag_mapped). Codes
// are mapped with the NLST labels; a value that is not a code is kept as the label. A stage
// given as 0..6 (the published index) is mapped back to its AJCC code.
func fileClinical(recs []record, labels *Labels) (map[string]tables.Clinical, error) {
	out := map[string]tables.Clinical{}
	get := func(r record, keys ...string) string {
		for _, k := range keys {
			if v := r[k]; v != "" {
				return v
			}
		}
		return ""
	}
	mapOr := func(m map[string]string, v string) string {
		if l, ok := m[v]; ok {
			return l
		}
		return v
	}
	for _, r := range recs {
		p := r["patient_id"]
		if p == "" {
			continue
		}
		c, ok := out[p]
		if !ok {
			c = tables.Clinical{PatientID: p, Age: -1}
		}
		if v := get(r, "age"); v != "" {
			c.Age = parseAge(v)
		}
		if v := get(r, "sex", "gender"); v != "" {
			c.Sex = mapOr(labels.Sex, v)
		}
		if v := get(r, "race"); v != "" {
			c.Race = mapOr(labels.Race, v)
		}
		if v := get(r, "smoking", "cigsmok"); v != "" {
			c.Smoking = mapOr(labels.Smoking, v)
		}
		if v := get(r, "cancer_type_code", "de_type"); v != "" {
			c.CancerTypeCode = v
			c.CancerType = labels.CancerType[v]
		}
		if v := get(r, "cancer_type", "de_type_label"); v != "" {
			c.CancerType = v
		}
		if v := get(r, "stage_code", "de_stag"); v != "" {
			s, ok := labels.Stage[v]
			if !ok {
				return nil, fmt.Errorf("patient %s: unknown AJCC stage code %q", p, v)
			}
			c.StageCode, c.Stage = v, s.Label
		} else if v := get(r, "stage", "de_stag_mapped"); v != "" {
			if i, err := strconv.Atoi(v); err == nil {
				code, ok := labels.stageByIndex(i)
				if !ok {
					return nil, fmt.Errorf("patient %s: stage index %d is not 0..6", p, i)
				}
				c.StageCode, c.Stage = code, labels.Stage[code].Label
			} else {
				c.Stage = v
			}
		}
		out[p] = c
	}
	return out, nil
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

func (st *Stage) fromFile(ctx context.Context, e env) (*result, error) {
	labels, err := LoadLabels()
	if err != nil {
		return nil, pipeline.Haltf("%w", err)
	}
	recs, err := readRecords(st.s.File, memory.DefaultAllocator)
	if err != nil {
		return nil, pipeline.Haltf("cohort: %w", err)
	}
	rows, err := parseLesionRecords(recs, e.fail)
	if err != nil {
		return nil, err
	}
	rows = filePolicy(st.s.Policy, rows)

	clinRecs := recs
	if st.s.ClinicalFile != "" {
		extra, err := readRecords(st.s.ClinicalFile, memory.DefaultAllocator)
		if err != nil {
			return nil, pipeline.Haltf("cohort: %w", err)
		}
		clinRecs = append(slices.Clone(recs), extra...)
	}
	clin, err := fileClinical(clinRecs, labels)
	if err != nil {
		return nil, pipeline.Haltf("cohort: clinical columns: %w", err)
	}

	scan, err := scanDICOMDir(ctx, st.s.DICOMDir, e.workers)
	if err != nil {
		return nil, err
	}
	e.count("dicom_files", int64(scan.files))
	e.log.Info("scanned DICOM folder", "dir", st.s.DICOMDir, "files", scan.files, "series", len(scan.series), "skipped", scan.skipped)

	seriesOf := map[string]*series{}
	for uid, ins := range scan.series {
		seriesOf[uid] = newSeries(uid, ins)
	}
	var lesions []tables.Lesion
	for _, f := range rows {
		l := f.lesion
		s := seriesOf[l.SeriesInstanceUID]
		if s == nil || len(s.Instances) == 0 {
			e.fail(l.LesionID, pipeline.Itemf(pipeline.ClassNotFound, l.LesionID,
				"lesion file row %d (patient %s): CT series %s has no readable instance in dicom_dir %s", f.row, l.PatientID, l.SeriesInstanceUID, st.s.DICOMDir))
			continue
		}
		if l.KeySOPInstanceUID != "" {
			if _, ok := s.rank[l.KeySOPInstanceUID]; !ok {
				e.fail(l.LesionID, pipeline.Itemf(pipeline.ClassNotFound, l.LesionID,
					"lesion file row %d (patient %s): key slice %s is not an instance of series %s in dicom_dir", f.row, l.PatientID, l.KeySOPInstanceUID, l.SeriesInstanceUID))
				continue
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
		lesions = append(lesions, l)
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
