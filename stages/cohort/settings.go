package cohort

import (
	"fmt"
	"regexp"
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
	// IDCRelease is the IDC BigQuery dataset, pinned (idc_v23) or idc_current; the
	// clinical dataset is <release>_clinical.
	IDCRelease string `yaml:"idc_release"`
	// BQProject is the project holding the IDC datasets (bigquery-public-data).
	BQProject string `yaml:"bq_project"`
	// AnalysisResultID selects the SR collection in dicom_all.
	AnalysisResultID string `yaml:"analysis_result_id"`
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
	MaxBytesBilled ByteSize `yaml:"max_bytes_billed"`

	// PipelineVersion goes into the tables' metadata only; the caller fills it.
	PipelineVersion string `yaml:"-"`
}

// DefaultSettings: IDC v23's NLST-Sybil SRs, one lesion per patient, 50 GB cap.
func DefaultSettings() Settings {
	return Settings{
		Source:           SourceBigQuery,
		Policy:           PolicyOneLesionPerPatient,
		IDCRelease:       "idc_v23",
		BQProject:        "bigquery-public-data",
		AnalysisResultID: "NLST-Sybil",
		MaxSliceGap:      1,
		MaxBytesBilled:   DefaultMaxBytesBilled,
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
			return fmt.Errorf("cohort: bq_project %q is not a Google Cloud project id", s.BQProject)
		}
		if s.BillingProject != "" && !projectRE.MatchString(s.BillingProject) {
			return fmt.Errorf("cohort: billing_project %q is not a Google Cloud project id", s.BillingProject)
		}
		if s.AnalysisResultID == "" {
			return fmt.Errorf("cohort: analysis_result_id is empty")
		}
		if s.MaxBytesBilled <= 0 {
			return fmt.Errorf("cohort: max_bytes_billed = %d, want > 0", s.MaxBytesBilled)
		}
	case SourceFile:
		if s.File == "" {
			return fmt.Errorf("cohort: source file needs cohort.file (a CSV or Parquet of lesions)")
		}
		if s.DICOMDir == "" {
			return fmt.Errorf("cohort: source file needs cohort.dicom_dir (the local DICOM folder)")
		}
		if s.IDCRelease != "" {
			if err := validRelease(s.IDCRelease); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("cohort: source %q, want %q or %q", s.Source, SourceBigQuery, SourceFile)
	}
	switch s.Policy {
	case PolicyOneLesionPerPatient, PolicyAllLesions, PolicyPublished2026:
	default:
		return fmt.Errorf("cohort: policy %q, want %s, %s or %s", s.Policy,
			PolicyOneLesionPerPatient, PolicyAllLesions, PolicyPublished2026)
	}
	if s.MaxSliceGap < 1 {
		return fmt.Errorf("cohort: max_slice_gap = %d, want ≥ 1", s.MaxSliceGap)
	}
	return nil
}

func validRelease(r string) error {
	if !releaseRE.MatchString(r) {
		return fmt.Errorf("cohort: idc_release %q, want idc_vNN (pinned, e.g. idc_v23) or idc_current", r)
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
		*b = ByteSize(x)
	case int64:
		*b = ByteSize(x)
	case int:
		*b = ByteSize(x)
	case float64:
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
