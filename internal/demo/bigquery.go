package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"cloud.google.com/go/bigquery"
	"github.com/suyashkumar/dicom"

	"connectome/internal/idcfake"
	"connectome/internal/sr"
)

// Tables returns the BigQuery tables that describe the cohort as IDC would: dicom_all rows
// derived from the generated DICOM objects themselves (each attribute of a file lands in the
// column of the same keyword, projected onto idcfixture's dicom_all schema, plus IDC's own
// columns: collection, analysis result, crdc uuids, URLs, size), and the NLST clinical rows,
// in the datasets <release> and <release>_clinical, in the shapes that release has
// (idcfake.StyleOf: e.g. the analysis_result_id the SR rows carry).
func (m *Manifest) Tables(release string) ([]idcfake.Table, error) {
	style := idcfake.StyleOf(release)
	analysisResultID := style.AnalysisResultID
	schema := idcfake.DicomAllSchema(style)
	var dicomAll bytes.Buffer
	for _, o := range m.Objects {
		row, err := m.dicomAllRow(o, schema, analysisResultID)
		if err != nil {
			return nil, err
		}
		if err := appendJSON(&dicomAll, row); err != nil {
			return nil, fmt.Errorf("dicom_all row of %s: %w", o.Key, err)
		}
	}
	c, err := m.Clinical()
	if err != nil {
		return nil, err
	}
	var prsn, ctab bytes.Buffer
	for _, r := range c.Prsn {
		row := map[string]any{"dicom_patient_id": r.DicomPatientID, "pid": r.PID, "source_batch": 0,
			"gender": r.Gender, "race": r.Race, "cigsmok": r.Cigsmok, "de_stag": r.DeStag, "de_type": r.DeType}
		var age int
		if _, err := fmt.Sscan(r.Age, &age); err == nil {
			row["age"] = age // INT64 in idcfixture's nlst_prsn
		}
		if err := appendJSON(&prsn, project(row, idcfake.PrsnSchema())); err != nil {
			return nil, err
		}
	}
	for _, r := range c.Ctab {
		row := map[string]any{"dicom_patient_id": r.DicomPatientID, "pid": r.PID, "source_batch": 0,
			"study_yr": r.StudyYr, "sct_ab_num": r.SctAbNum, "sct_slice_num": r.SctSliceNum, "sct_epi_loc": r.SctEpiLoc,
			"sct_long_dia": r.SctLongDia, "sct_pre_att": r.SctPreAtt, "sct_margins": r.SctMargins}
		if err := appendJSON(&ctab, project(row, idcfake.CtabSchema())); err != nil {
			return nil, err
		}
	}
	// column_metadata: idcfixture's description of the NLST columns (a fixture with no
	// patients yields just that table's rows).
	meta, err := (&idcfake.Fixture{Release: release}).Tables()
	if err != nil {
		return nil, err
	}
	clin := release + "_clinical"
	out := []idcfake.Table{
		{Dataset: release, Name: "dicom_all", Schema: schema, NDJSON: dicomAll.Bytes(), Rows: len(m.Objects)},
		{Dataset: clin, Name: "nlst_prsn", Schema: idcfake.PrsnSchema(), NDJSON: prsn.Bytes(), Rows: len(c.Prsn)},
		{Dataset: clin, Name: "nlst_ctab", Schema: idcfake.CtabSchema(), NDJSON: ctab.Bytes(), Rows: len(c.Ctab)},
	}
	for _, t := range meta {
		if t.Name == "column_metadata" {
			out = append(out, t)
		}
	}
	if len(out) != 4 {
		return nil, fmt.Errorf("idcfixture gave no column_metadata table")
	}
	return out, nil
}

func appendJSON(buf *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf.Write(b)
	buf.WriteByte('\n')
	return nil
}

// dicomAllRow reads one object's header and makes its dicom_all row.
func (m *Manifest) dicomAllRow(o Object, schema bigquery.Schema, analysisResultID string) (map[string]any, error) {
	f, err := os.Open(m.Path(o))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ds, err := dicom.Parse(f, o.Size, nil, dicom.SkipPixelData())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.Key, err)
	}
	attrs := sr.Tree(ds.Elements)
	// IDC's own columns (etl_flow dicom_all.sql).
	attrs["collection_id"] = "nlst"
	if o.Modality == "SR" {
		attrs["analysis_result_id"] = analysisResultID
	}
	attrs["crdc_study_uuid"] = o.CRDCStudyUUID
	attrs["crdc_series_uuid"] = o.CRDCSeriesUUID
	attrs["crdc_instance_uuid"] = o.CRDCInstanceUUID
	attrs["gcs_url"] = m.GCSURL(o)
	attrs["aws_url"] = "s3://" + m.Bucket + "/" + o.Key
	attrs["instance_size"] = o.Size
	return project(attrs, schema), nil
}

// project keeps the attributes that schema has a column for, converted to the column's type:
// a STRING column gets the value (multi-values joined with a backslash, as DICOM writes
// them), a REPEATED column a list, a DATE column YYYY-MM-DD, a RECORD column its items
// projected onto the record's fields. Attributes without a column are dropped, as in IDC's
// export.
func project(attrs map[string]any, schema bigquery.Schema) map[string]any {
	out := map[string]any{}
	for _, f := range schema {
		v, ok := attrs[f.Name]
		if !ok || v == nil {
			continue
		}
		if c := convert(v, f); c != nil {
			out[f.Name] = c
		}
	}
	return out
}

func convert(v any, f *bigquery.FieldSchema) any {
	if f.Type == bigquery.RecordFieldType {
		items, ok := v.([]any)
		if !ok {
			return nil
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				out = append(out, project(m, f.Schema))
			}
		}
		if !f.Repeated {
			if len(out) == 0 {
				return nil
			}
			return out[0]
		}
		return out
	}
	vals := scalars(v)
	if len(vals) == 0 {
		return nil
	}
	conv := make([]any, 0, len(vals))
	for _, s := range vals {
		c := scalar(s, f.Type)
		if c == nil {
			return nil
		}
		conv = append(conv, c)
	}
	if f.Repeated {
		return conv
	}
	if len(conv) == 1 {
		return conv[0]
	}
	if f.Type == bigquery.StringFieldType {
		parts := make([]string, len(conv))
		for i, c := range conv {
			parts[i] = c.(string)
		}
		return strings.Join(parts, `\`)
	}
	return conv[0]
}

// scalars lists a value's elements as strings, ints or floats.
func scalars(v any) []any {
	switch x := v.(type) {
	case []string:
		out := make([]any, len(x))
		for i := range x {
			out[i] = strings.TrimSpace(x[i])
		}
		return out
	case []int:
		out := make([]any, len(x))
		for i := range x {
			out[i] = x[i]
		}
		return out
	case []float64:
		out := make([]any, len(x))
		for i := range x {
			out[i] = x[i]
		}
		return out
	case string, int, int64, float64:
		return []any{x}
	}
	return nil
}

func scalar(v any, t bigquery.FieldType) any {
	switch t {
	case bigquery.StringFieldType:
		return fmt.Sprint(v)
	case bigquery.IntegerFieldType:
		switch x := v.(type) {
		case int, int64:
			return x
		case float64:
			return int64(x)
		case string:
			var n int64
			if _, err := fmt.Sscan(x, &n); err == nil {
				return n
			}
		}
	case bigquery.FloatFieldType:
		switch x := v.(type) {
		case int:
			return float64(x)
		case int64:
			return float64(x)
		case float64:
			return x
		case string:
			var f float64
			if _, err := fmt.Sscan(x, &f); err == nil {
				return f
			}
		}
	case bigquery.DateFieldType:
		if s, ok := v.(string); ok && len(s) == 8 {
			return s[:4] + "-" + s[4:6] + "-" + s[6:]
		}
	}
	return nil
}
