package cohort

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"cloud.google.com/go/bigquery"

	"connectome/pipeline"
)

// clinicalColumns lists the columns the clinical queries read from each NLST table.
func clinicalColumns(table string) []string {
	switch table {
	case "nlst_prsn":
		return []string{"age", "gender", "race", "cigsmok", "de_stag", "de_type"}
	case "nlst_ctab":
		return []string{"study_yr", "sct_slice_num", "sct_epi_loc"}
	}
	return nil
}

// checkColumns confirms with IDC's column_metadata that every column the clinical query
// reads exists (a missing one halts with its name), and logs codes that IDC lists but
// configs/nlst-labels.yaml does not map. It returns IDC's own code descriptions per column,
// used as labels for codes the mapping lacks.
func (st *Stage) checkColumns(ctx context.Context, r *queryRunner, labels *Labels, table string) (map[string]map[string]string, error) {
	want := clinicalColumns(table)
	rows, err := r.run(ctx, "column_metadata",
		bigquery.QueryParameter{Name: "table_suffix", Value: table},
		bigquery.QueryParameter{Name: "columns", Value: want})
	if err != nil {
		return nil, err
	}
	desc := map[string]map[string]string{}
	for _, row := range rows {
		col := vStr(row, "column_name")
		m := map[string]string{}
		var vals []map[string]any
		if js := vStr(row, "values_json"); js != "" && js != "null" {
			if err := json.Unmarshal([]byte(js), &vals); err != nil {
				r.log.Warn("column_metadata values not readable", "table", table, "column", col, "err", err)
			}
		}
		for _, v := range vals {
			code := strings.TrimSpace(jsonScalar(v["option_code"]))
			if code != "" {
				m[code] = strings.TrimSpace(jsonScalar(v["option_description"]))
			}
		}
		desc[col] = m
	}
	var missing []string
	for _, c := range want {
		if _, ok := desc[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, pipeline.Haltf("%s_clinical.column_metadata lists no column %s in %s; the release's clinical schema differs from configs/sql/%s.sql",
			r.release, strings.Join(missing, ", "), table, table)
	}
	mapped := map[string]func(string) bool{
		"gender":  func(c string) bool { _, ok := labels.Sex[c]; return ok },
		"race":    func(c string) bool { _, ok := labels.Race[c]; return ok },
		"cigsmok": func(c string) bool { _, ok := labels.Smoking[c]; return ok },
		"de_stag": func(c string) bool { _, ok := labels.Stage[c]; return ok },
	}
	for col, known := range mapped {
		var unknown []string
		for code := range desc[col] {
			if !known(code) {
				unknown = append(unknown, code)
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			r.log.Warn("IDC lists codes that configs/nlst-labels.yaml does not map", "table", table, "column", col, "codes", unknown)
		}
	}
	return desc, nil
}

func jsonScalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		b, _ := json.Marshal(x)
		return string(b)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}
