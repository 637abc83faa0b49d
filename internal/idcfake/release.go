package idcfake

import (
	"strconv"
	"strings"

	"cloud.google.com/go/bigquery"
)

// Style is what differs, between IDC releases, in the columns the cohort reads; a fixture
// built for a release takes that release's style, so the same cohort SQL is tested against
// each shape IDC has served.
type Style struct {
	// AnalysisResultID is what dicom_all.analysis_result_id holds for NLST-Sybil: the
	// analysis result's name up to v23, an internal id from v24 on (etl_flow, 2026-05:
	// "dicom_all analysis_result_id column had analysis_result_names"; the v24
	// analysis_results_metadata has separate analysis_result_name and analysis_result_id).
	AnalysisResultID string
	// InstanceSizeType is dicom_all.instance_size's type: IDC changed it between releases
	// (etl_flow's auxiliary_metadata declares INTEGER, its dicom_all schema file STRING;
	// which release has which is not confirmed, so the two styles take one each and the
	// query's SAFE_CAST must read both).
	InstanceSizeType bigquery.FieldType
}

// v24 is the first release with the v24 changes.
const v24 = 24

// StyleOf returns the style of an IDC release ("idc_v23", "idc_v25", "idc_current"); a
// name it cannot read (a test's own dataset) gets the current style.
func StyleOf(release string) Style {
	if n, err := strconv.Atoi(strings.TrimPrefix(release, "idc_v")); err == nil && n < v24 {
		return Style{AnalysisResultID: "NLST-Sybil", InstanceSizeType: bigquery.IntegerFieldType}
	}
	return Style{AnalysisResultID: "nlst_sybil", InstanceSizeType: bigquery.StringFieldType}
}
