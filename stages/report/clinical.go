package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/tables"
	"connectome/pipeline"
	"connectome/stages/cohort"
)

// ClinicalColumns documents the columns of a clinical file (report.clinical_file, the CLI's
// --clinical); `connectome run --help` and README.md show it. A file needs lesion_id or
// patient_id and at least one attribute column; names are case-insensitive, other columns
// are ignored.
const ClinicalColumns = `A CSV, Parquet or Arrow IPC file, one row per lesion or patient. Columns (any case):
  lesion_id and/or patient_id   a row applies to the node with that lesion id, else to every
                                node of that patient
  age                           years
  sex                           M/F, male/female, or the NLST code 1/2
  race                          a label, or the NLST code (1-7, 95-99)
  smoking                       current/former, or the NLST code 1/0
  cancer_type                   an ICD-O-3 morphology label, or its code (8140)
  cancer_type_code              an ICD-O-3 morphology code
  stage                         a label (IIA), the published index 0..6 (IA..IV), or an AJCC code (210)
  stage_code                    an AJCC stage code
The NLST names gender, cigsmok, de_type, de_type_label, de_stag and de_stag_mapped are read as
sex, smoking, cancer_type_code, cancer_type, stage_code and stage; other columns are ignored.
A row that cannot be read is an item failure (connectome failures lists it); the rest go on.`

// clinicalAliases maps the NLST column names to the documented ones.
var clinicalAliases = map[string]string{
	"gender": "sex", "cigsmok": "smoking", "de_type": "cancer_type_code",
	"de_type_label": "cancer_type", "de_stag": "stage_code", "de_stag_mapped": "stage",
}

var clinicalAttributes = []string{"age", "sex", "race", "smoking", "cancer_type", "cancer_type_code", "stage", "stage_code"}

// icdO3Code is an ICD-O-3 morphology code, with or without its behaviour digit.
var icdO3Code = regexp.MustCompile(`^[0-9]{4}(/[0-9])?$`)

// clinicalIndex finds a node's clinical row: by lesion id, else by patient id.
type clinicalIndex struct {
	byLesion  map[string]*tables.Clinical
	byPatient map[string]*tables.Clinical
}

// clinicalByPatient indexes rows keyed by patient (cohort/clinical.arrow).
func clinicalByPatient(rows []tables.Clinical) *clinicalIndex {
	ix := &clinicalIndex{byPatient: make(map[string]*tables.Clinical, len(rows))}
	for i := range rows {
		ix.byPatient[rows[i].PatientID] = &rows[i]
	}
	return ix
}

// rowsFor returns each node's clinical row (nil when it has none), or nil without an index.
func (ix *clinicalIndex) rowsFor(ids, patients []string) []*tables.Clinical {
	if ix == nil {
		return nil
	}
	out := make([]*tables.Clinical, len(ids))
	for i, id := range ids {
		if c := ix.byLesion[id]; c != nil {
			out[i] = c
		} else {
			out[i] = ix.byPatient[patients[i]]
		}
	}
	return out
}

// readClinicalFile reads a clinical file (ClinicalColumns): CSV, Parquet or Arrow IPC, told
// apart by their first bytes. A file that cannot be read, or lacks the columns, halts; a bad
// row is an item failure (fail) and is left out.
func readClinicalFile(path string, fail func(item string, err error)) (*clinicalIndex, error) {
	names, recs, err := readRecords(path)
	if err != nil {
		return nil, pipeline.Haltf("read clinical file %s: %w", path, err)
	}
	if !slices.Contains(names, "lesion_id") && !slices.Contains(names, "patient_id") {
		return nil, pipeline.Haltf("clinical file %s: no lesion_id or patient_id column (it has %s)", path, strings.Join(names, ", "))
	}
	if !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(clinicalAttributes, n) }) {
		return nil, pipeline.Haltf("clinical file %s: none of the columns %s (it has %s)", path, strings.Join(clinicalAttributes, ", "), strings.Join(names, ", "))
	}
	labels, err := cohort.LoadLabels()
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	ix := &clinicalIndex{byLesion: map[string]*tables.Clinical{}, byPatient: map[string]*tables.Clinical{}}
	firstRow := map[string]int{}
	for n, r := range recs {
		row := n + 1
		lesion, patient := r["lesion_id"], r["patient_id"]
		item, keys, key := lesion, ix.byLesion, "lesion_id"
		if lesion == "" {
			item, keys, key = patient, ix.byPatient, "patient_id"
		}
		if item == "" {
			item = fmt.Sprintf("row %d", row)
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "clinical file %s: no lesion_id or patient_id", path))
			continue
		}
		if first, dup := firstRow[key+" "+item]; dup {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "clinical file %s row %d: %s given again (row %d is used)", path, row, key, first))
			continue
		}
		c, err := parseClinical(r, labels)
		if err != nil {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "clinical file %s row %d: %w", path, row, err))
			continue
		}
		c.PatientID = patient
		firstRow[key+" "+item] = row
		keys[item] = &c
	}
	return ix, nil
}

// parseClinical reads one row's attributes; codes are mapped with the NLST labels, other
// values are kept as labels.
func parseClinical(r record, l *cohort.Labels) (tables.Clinical, error) {
	c := tables.Clinical{Age: -1}
	if v := r["age"]; v != "" {
		a, err := strconv.ParseFloat(v, 64)
		if err != nil || a < 0 || a > 130 || math.IsNaN(a) {
			return c, fmt.Errorf("age %q is not a number of years", v)
		}
		c.Age = int32(a)
	}
	c.Sex = mapCode(l.Sex, r["sex"])
	c.Race = mapCode(l.Race, r["race"])
	c.Smoking = mapCode(l.Smoking, r["smoking"])
	if v := r["cancer_type_code"]; v != "" {
		c.CancerTypeCode, c.CancerType = v, l.CancerType[v]
	}
	if v := r["cancer_type"]; v != "" {
		if icdO3Code.MatchString(v) {
			c.CancerTypeCode, c.CancerType = v, cmpOr(l.CancerType[v], c.CancerType)
		} else {
			c.CancerType = v
		}
	}
	if v := r["stage_code"]; v != "" {
		s, ok := l.Stage[v]
		if !ok {
			return c, fmt.Errorf("stage_code %q is not an AJCC stage code of configs/nlst-labels.yaml", v)
		}
		c.StageCode, c.Stage = v, s.Label
	} else if v := r["stage"]; v != "" {
		code, label, err := parseStage(v, l)
		if err != nil {
			return c, err
		}
		c.StageCode, c.Stage = code, label
	}
	return c, nil
}

// parseStage reads a stage value: the published 0..6 index, an AJCC code, or a label.
func parseStage(v string, l *cohort.Labels) (code, label string, err error) {
	if s, ok := l.Stage[v]; ok {
		return v, s.Label, nil
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		return "", v, nil // a label such as "IIA"
	}
	for code, s := range l.Stage {
		if s.Index != nil && *s.Index == i {
			return code, s.Label, nil
		}
	}
	return "", "", fmt.Errorf("stage %q is neither the published index 0..6 nor an AJCC stage code", v)
}

func mapCode(m map[string]string, v string) string {
	if l, ok := m[v]; ok {
		return l
	}
	return v
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// record is one row of a table: lower-case column name → value ("" for null).
type record map[string]string

// readRecords reads an Arrow IPC file, a Parquet file or a CSV file (header row first) and
// returns its column names (as columnName gives them) and rows.
func readRecords(path string) ([]string, []record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	head := make([]byte, 6)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	switch head = head[:n]; {
	case bytes.Equal(head, []byte("ARROW1")):
		t, err := tables.ReadFile(path, memory.DefaultAllocator)
		if err != nil {
			return nil, nil, err
		}
		defer t.Release()
		var out []record
		for _, b := range t.Batches {
			out = appendRecords(out, b)
		}
		return schemaNames(t.Schema), out, nil
	case bytes.HasPrefix(head, []byte("PAR1")):
		return readParquetRecords(f)
	}
	return readCSVRecords(f)
}

func readParquetRecords(f *os.File) ([]string, []record, error) {
	pf, err := file.NewParquetReader(f)
	if err != nil {
		return nil, nil, err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 14}, memory.DefaultAllocator)
	if err != nil {
		return nil, nil, err
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	defer rr.Release()
	var out []record
	for rr.Next() {
		out = appendRecords(out, rr.RecordBatch())
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	return schemaNames(rr.Schema()), out, nil
}

func schemaNames(s *arrow.Schema) []string {
	out := make([]string, s.NumFields())
	for i, f := range s.Fields() {
		out[i] = columnName(f.Name)
	}
	return out
}

// appendRecords adds a batch's rows, every value as its string form.
func appendRecords(out []record, b arrow.RecordBatch) []record {
	for i := 0; i < int(b.NumRows()); i++ {
		r := record{}
		for c := 0; c < int(b.NumCols()); c++ {
			v := ""
			if col := b.Column(c); col.IsValid(i) {
				v = strings.TrimSpace(col.ValueStr(i))
			}
			r[columnName(b.ColumnName(c))] = v
		}
		out = append(out, r)
	}
	return out
}

func readCSVRecords(f io.Reader) ([]string, []record, error) {
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read the CSV header: %w", err)
	}
	for i := range header {
		header[i] = columnName(strings.TrimPrefix(header[i], "\ufeff"))
	}
	var out []record
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return header, out, nil
		}
		if err != nil {
			return nil, nil, err
		}
		rec := record{}
		for i, h := range header {
			if i < len(row) {
				rec[h] = strings.TrimSpace(row[i])
			} else {
				rec[h] = ""
			}
		}
		out = append(out, rec)
	}
}

// columnName is the documented name of a column: lower case, NLST names mapped.
func columnName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if a, ok := clinicalAliases[s]; ok {
		return a
	}
	return s
}
