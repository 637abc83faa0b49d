package cohort

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"text/template"

	"cloud.google.com/go/bigquery"

	"connectome/configs"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// queryRunner renders the embedded queries for one dataset and runs each one after a dry
// run that logs the bytes it will scan and halts above the cap.
type queryRunner struct {
	q        Querier
	project  string // data project, validated
	release  string // IDC release, validated
	maxBytes int64
	// srContent asks sr_objects for the SRs' content trees (sr_content bigquery)
	srContent bool
	log       *slog.Logger
	count     func(string, int64)
}

// render fills the query's dataset placeholders. Only validated identifiers are substituted
// (Settings.Validate checks both against strict patterns); every value that comes from data
// or the user is a query parameter.
func (r *queryRunner) render(name string) (string, error) {
	if !projectRE.MatchString(r.project) || !releaseRE.MatchString(r.release) {
		return "", pipeline.Haltf("refusing to build query %s for project %q, release %q", name, r.project, r.release)
	}
	text, err := configs.SQL(name)
	if err != nil {
		return "", err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("parse query %s: %w", name, err)
	}
	var sb strings.Builder
	data := struct {
		Project, Release string
		SRContent        bool
	}{r.project, r.release, r.srContent}
	if err := t.Execute(&sb, data); err != nil {
		return "", fmt.Errorf("render query %s: %w", name, err)
	}
	return sb.String(), nil
}

// run dry-runs then runs the named query.
func (r *queryRunner) run(ctx context.Context, name string, params ...bigquery.QueryParameter) ([]map[string]bigquery.Value, error) {
	sql, err := r.render(name)
	if err != nil {
		return nil, err
	}
	n, err := r.q.DryRun(ctx, sql, params)
	if err != nil {
		return nil, pipeline.Haltf("dry run of query %s: %s", name, oneLine(err))
	}
	r.log.Info("BigQuery dry run", "query", name, "bytes", n, "size", FormatBytes(n), "max_bytes_billed", FormatBytes(r.maxBytes))
	r.count("bytes_scanned", n)
	if n > r.maxBytes {
		return nil, pipeline.Haltf("query %s would scan %s (%d bytes), more than max_bytes_billed %s; raise cohort.max_bytes_billed (or --max-bytes-billed) to run it",
			name, FormatBytes(n), n, FormatBytes(r.maxBytes))
	}
	rows, err := r.q.Query(ctx, sql, params, r.maxBytes)
	if err != nil {
		return nil, pipeline.Haltf("query %s: %s", name, oneLine(err))
	}
	r.log.Info("BigQuery query done", "query", name, "rows", len(rows))
	return rows, nil
}

// Row accessors: BigQuery returns NULL as nil; numbers may arrive as int64 or float64.

func vStr(row map[string]bigquery.Value, k string) string {
	switch v := row[k].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func vFloat(row map[string]bigquery.Value, k string) (float64, bool) {
	switch v := row[k].(type) {
	case float64:
		return v, !math.IsNaN(v)
	case int64:
		return float64(v), true
	}
	return 0, false
}

func vInt(row map[string]bigquery.Value, k string) (int64, bool) {
	switch v := row[k].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), v == math.Trunc(v)
	}
	return 0, false
}

// srObjectRow is one row of sr_objects.sql before its content is parsed; the content comes
// from the query or from the SR's object (readSRObjects).
type srObjectRow struct {
	AnalysisResultID                                      string
	PatientID, StudyUID, StudyDate, SRSeriesUID, SRSOPUID string
	GCSURL                                                string
	InstanceSize                                          int64
	EvidenceJSON, TemplateID, ContentJSON                 string
}

func decodeSRObjects(rows []map[string]bigquery.Value) []srObjectRow {
	out := make([]srObjectRow, len(rows))
	for i, r := range rows {
		out[i] = srObjectRow{
			AnalysisResultID: vStr(r, "analysis_result_id"),
			PatientID:        vStr(r, "patient_id"), StudyUID: vStr(r, "study_instance_uid"),
			StudyDate: vStr(r, "study_date"), SRSeriesUID: vStr(r, "sr_series_instance_uid"),
			SRSOPUID: vStr(r, "sr_sop_instance_uid"), EvidenceJSON: vStr(r, "evidence_json"),
			TemplateID: templateID(vStr(r, "template_json")), ContentJSON: vStr(r, "content_json"),
			GCSURL: vStr(r, "gcs_url"),
		}
		if n, ok := vInt(r, "instance_size"); ok {
			out[i].InstanceSize = n
		}
	}
	return out
}

// instanceRow is one row of ct_instances.sql; Missing lists the NULL geometry columns.
type instanceRow struct {
	tables.Instance
	PatientID, StudyUID string
	Missing             []string
}

func decodeInstances(rows []map[string]bigquery.Value) []instanceRow {
	out := make([]instanceRow, len(rows))
	for i, r := range rows {
		in := instanceRow{PatientID: vStr(r, "patient_id"), StudyUID: vStr(r, "study_instance_uid")}
		in.SeriesInstanceUID = vStr(r, "series_instance_uid")
		in.SOPInstanceUID = vStr(r, "sop_instance_uid")
		in.CRDCSeriesUUID = vStr(r, "crdc_series_uuid")
		in.CRDCInstanceUUID = vStr(r, "crdc_instance_uuid")
		in.GCSURL = vStr(r, "gcs_url")
		if n, ok := vInt(r, "instance_size"); ok {
			in.InstanceSize = n
		}
		if n, ok := vInt(r, "instance_number"); ok {
			in.InstanceNumber = int32(n)
		} else {
			in.Missing = append(in.Missing, "InstanceNumber")
		}
		f := func(col, name string, dst *float64) {
			v, ok := vFloat(r, col)
			if !ok {
				in.Missing = append(in.Missing, name)
			}
			*dst = v
		}
		for a := range 3 {
			f(fmt.Sprintf("ipp_%d", a), fmt.Sprintf("ImagePositionPatient[%d]", a), &in.ImagePositionPatient[a])
		}
		for a := range 6 {
			f(fmt.Sprintf("iop_%d", a), fmt.Sprintf("ImageOrientationPatient[%d]", a), &in.ImageOrientationPatient[a])
		}
		f("row_spacing", "PixelSpacing[0]", &in.PixelSpacing[0])
		f("column_spacing", "PixelSpacing[1]", &in.PixelSpacing[1])
		if n, ok := vInt(r, "n_rows"); ok {
			in.Rows = int32(n)
		} else {
			in.Missing = append(in.Missing, "Rows")
		}
		if n, ok := vInt(r, "n_columns"); ok {
			in.Columns = int32(n)
		} else {
			in.Missing = append(in.Missing, "Columns")
		}
		out[i] = in
	}
	return out
}

func decodePrsn(rows []map[string]bigquery.Value) map[string]prsnRow {
	out := map[string]prsnRow{}
	for _, r := range rows {
		p := prsnRow{
			PatientID: vStr(r, "patient_id"), Age: vStr(r, "age"), Gender: vStr(r, "gender"),
			Race: vStr(r, "race"), Cigsmok: vStr(r, "cigsmok"), DeStag: vStr(r, "de_stag"), DeType: vStr(r, "de_type"),
		}
		out[p.PatientID] = p
	}
	return out
}

func decodeCtab(rows []map[string]bigquery.Value) []ctabRow {
	out := make([]ctabRow, len(rows))
	for i, r := range rows {
		out[i] = ctabRow{PatientID: vStr(r, "patient_id"), StudyYr: vStr(r, "study_yr"), SliceNum: vStr(r, "sct_slice_num")}
	}
	return out
}

// templateID reads TemplateIdentifier from TO_JSON_STRING(ContentTemplateSequence). The
// sequence comes back as JSON, not as a field path, because the emulator resolves
// seq[SAFE_OFFSET(0)].field by position when sibling rows have other fields set.
func templateID(js string) string {
	var items []map[string]any
	if err := json.Unmarshal([]byte(js), &items); err != nil || len(items) == 0 {
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(items[0]["TemplateIdentifier"]))
}
