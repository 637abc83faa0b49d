package cohort

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Sources and policies (docs/cohort-policies.md).
const (
	SourceBigQuery = "bigquery"
	SourceFile     = "file"

	PolicyOneLesionPerPatient = "one-lesion-per-patient"
	PolicyAllLesions          = "all-lesions"
	PolicyPublished2026       = "published-2026"

	// Where the SRs' content trees are read (source bigquery): from each SR's object in the
	// bucket (a few hundred kB per SR) or from BigQuery's ContentSequence column, which is
	// billed for every SR in the collection (docs/cohort-policies.md, "Bytes scanned").
	SRContentBucket   = "bucket"
	SRContentBigQuery = "bigquery"
)

// DefaultMaxBytesBilled is the default cap on the bytes one query may bill: 50 GB.
const DefaultMaxBytesBilled = 50 * 1000 * 1000 * 1000

// Settings configure the cohort stage (the `cohort:` block of a pipeline config).
type Settings struct {
	// Source is where the lesions come from: "bigquery" (IDC's NLST-Sybil SRs) or "file"
	// (a CSV or Parquet of lesions plus a local DICOM folder).
	Source string `yaml:"source"`
	// Policy picks the nodes of the map from the lesions (source bigquery only).
	Policy string `yaml:"policy"`
	// IDCRelease is the IDC BigQuery dataset, pinned (idc_vNN, v23 or later) or
	// idc_current; the clinical dataset is <release>_clinical.
	IDCRelease string `yaml:"idc_release"`
	// BQProject is the project holding the IDC datasets (bigquery-public-data).
	BQProject string `yaml:"bq_project"`
	// AnalysisResultIDs select the SR collection in dicom_all: an SR whose
	// analysis_result_id is any of them. IDC changed what that column holds in v24: up to
	// v23 it is the analysis result's name (NLST-Sybil), from v24 an internal id
	// (nlst_sybil), with the name moved to analysis_results_metadata. Listing both lets
	// one config run on every release (docs/cohort-policies.md).
	AnalysisResultIDs []string `yaml:"analysis_result_ids"`
	// CollectionID is the IDC collection the SRs and their CT belong to (analysis results
	// carry their source collection's id). Every dicom_all query filters on it: dicom_all is
	// clustered on collection_id, so the filter lets BigQuery skip the other collections.
	CollectionID string `yaml:"collection_id"`
	// SRContent is where the SRs' content comes from: "bucket" (default: each SR object is
	// downloaded from its gcs_url, through fetch's endpoint, retries and timeout) or
	// "bigquery" (the ContentSequence column: no download, but tens of GB scanned for NLST).
	// Both give the same content (internal/demo/demorun's TestSRContentFromBucketOrBigQuery),
	// so it is not part of the config hash (see Stage.Settings).
	SRContent string `yaml:"sr_content,omitempty"`
	// MaxSliceGap is the largest difference in slice index between two boxes of one 3-D
	// lesion (1 = adjacent slices only).
	MaxSliceGap int `yaml:"max_slice_gap"`
	// File is the lesions table for source file (CSV or Parquet, by extension).
	File string `yaml:"file,omitempty"`
	// ClinicalFile is an optional per-patient clinical table for source file (CSV or
	// Parquet): patient_id, age, sex, race, smoking, cancer_type(_code), stage(_code).
	ClinicalFile string `yaml:"clinical_file,omitempty"`
	// DICOMDir is the local DICOM folder for source file; series are found by reading headers.
	DICOMDir string `yaml:"dicom_dir,omitempty"`

	// BillingProject is the Google Cloud project the queries are billed to (falls back to
	// GOOGLE_CLOUD_PROJECT). MaxBytesBilled caps what one query may bill. Neither changes
	// the output, so neither is part of the config hash (see Stage.Settings).
	BillingProject string   `yaml:"billing_project,omitempty"`
	MaxBytesBilled ByteSize `yaml:"max_bytes_billed,omitempty"`

	// PipelineVersion goes into the tables' metadata only; the caller fills it.
	PipelineVersion string `yaml:"-"`
}

// DefaultRelease is the IDC release a config without idc_release reads: the current one
// when this default was last set, pinned so that a run can be repeated.
const DefaultRelease = "idc_v25"

// DefaultSettings: the NLST-Sybil SRs of DefaultRelease, one lesion per patient, 50 GB cap.
func DefaultSettings() Settings {
	return Settings{
		Source:            SourceBigQuery,
		Policy:            PolicyOneLesionPerPatient,
		IDCRelease:        DefaultRelease,
		BQProject:         "bigquery-public-data",
		AnalysisResultIDs: []string{"NLST-Sybil", "nlst_sybil"},
		CollectionID:      "nlst",
		SRContent:         SRContentBucket,
		MaxSliceGap:       1,
		MaxBytesBilled:    DefaultMaxBytesBilled,
	}
}

var (
	releaseRE = regexp.MustCompile(`^idc_(v[0-9]+|current)$`)
	// Google Cloud project ids: 6–30 lowercase letters, digits, hyphens; starts with a letter.
	projectRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
)

// Validate reports a setting that cannot work, naming the key.
func (s Settings) Validate() error {
	switch s.Source {
	case SourceBigQuery:
		if err := validRelease(s.IDCRelease); err != nil {
			return err
		}
		if !projectRE.MatchString(s.BQProject) {
			return fmt.Errorf("bq_project %q is not a Google Cloud project id", s.BQProject)
		}
		if s.BillingProject != "" && !projectRE.MatchString(s.BillingProject) {
			return fmt.Errorf("billing_project %q is not a Google Cloud project id", s.BillingProject)
		}
		if len(s.AnalysisResultIDs) == 0 || slices.Contains(s.AnalysisResultIDs, "") {
			return fmt.Errorf("analysis_result_ids %q: want one or more non-empty ids", s.AnalysisResultIDs)
		}
		if s.CollectionID == "" {
			return fmt.Errorf("collection_id is empty")
		}
		if s.SRContent != SRContentBucket && s.SRContent != SRContentBigQuery {
			return fmt.Errorf("sr_content %q, want %q or %q", s.SRContent, SRContentBucket, SRContentBigQuery)
		}
		if s.MaxBytesBilled <= 0 {
			return fmt.Errorf("max_bytes_billed = %d, want > 0", s.MaxBytesBilled)
		}
	case SourceFile:
		if s.File == "" {
			return fmt.Errorf("source file needs cohort.file (a CSV or Parquet of lesions)")
		}
		if s.DICOMDir == "" {
			return fmt.Errorf("source file needs cohort.dicom_dir (the local DICOM folder)")
		}
		if s.IDCRelease != "" {
			if err := validRelease(s.IDCRelease); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("source %q, want %q or %q", s.Source, SourceBigQuery, SourceFile)
	}
	switch s.Policy {
	case PolicyOneLesionPerPatient, PolicyAllLesions, PolicyPublished2026:
	default:
		return fmt.Errorf("policy %q, want %s, %s or %s", s.Policy,
			PolicyOneLesionPerPatient, PolicyAllLesions, PolicyPublished2026)
	}
	if s.MaxSliceGap < 1 {
		return fmt.Errorf("max_slice_gap = %d, want ≥ 1", s.MaxSliceGap)
	}
	return nil
}

func validRelease(r string) error {
	if !releaseRE.MatchString(r) {
		return fmt.Errorf("idc_release %q, want idc_vNN (pinned, e.g. %s) or idc_current", r, DefaultRelease)
	}
	return nil
}

// ByteSize is a byte count that YAML may also write with a unit: 50GB, 1.5 TB, 200MiB.
type ByteSize int64

// UnmarshalYAML accepts an integer or a string with a unit.
func (b *ByteSize) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	switch x := v.(type) {
	case uint64:
		if x > math.MaxInt64 {
			return fmt.Errorf("byte size %d is more than %d", x, int64(math.MaxInt64))
		}
		*b = ByteSize(x)
	case int64:
		*b = ByteSize(x)
	case int:
		*b = ByteSize(x)
	case float64:
		if !(x >= math.MinInt64 && x < math.MaxInt64) {
			return fmt.Errorf("byte size %g is out of range", x)
		}
		*b = ByteSize(x)
	case string:
		n, err := ParseByteSize(x)
		if err != nil {
			return err
		}
		*b = ByteSize(n)
	default:
		return fmt.Errorf("byte size: want a number or a string like 50GB, got %v", v)
	}
	return nil
}

// String writes the size with a decimal unit, e.g. "50 GB".
func (b ByteSize) String() string { return FormatBytes(int64(b)) }

var sizeRE = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?I?B?)?\s*$`)

// ParseByteSize parses "50GB", "50 GB", "1.5TB", "200MiB" or a plain byte count
// (for the CLI's --max-bytes-billed).
func ParseByteSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.ToUpper(s))
	if m == nil {
		return 0, fmt.Errorf("byte size %q: want a number with an optional unit (KB, MB, GB, TB, KiB, ...)", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("byte size %q: %w", s, err)
	}
	unit := strings.TrimSuffix(m[2], "B")
	mult := 1.0
	if unit != "" {
		base := 1000.0
		if strings.HasSuffix(unit, "I") {
			base = 1024
			unit = strings.TrimSuffix(unit, "I")
		}
		exp := strings.Index("KMGTP", unit) + 1
		if exp == 0 {
			return 0, fmt.Errorf("byte size %q: unknown unit", s)
		}
		for range exp {
			mult *= base
		}
	}
	if !(f*mult < math.MaxInt64) {
		return 0, fmt.Errorf("byte size %q is more than %d bytes", s, int64(math.MaxInt64))
	}
	return int64(f * mult), nil
}

// FormatBytes writes n with a decimal unit (1 GB = 10⁹ bytes, as BigQuery bills).
func FormatBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.3g %s", f, units[i])
}
