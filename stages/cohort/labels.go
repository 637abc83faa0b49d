package cohort

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"connectome/configs"
	"connectome/internal/tables"
	"connectome/internal/yamlconf"
)

// Labels maps NLST clinical codes to labels (configs/nlst-labels.yaml).
type Labels struct {
	Sex        map[string]string     `yaml:"sex"`
	Race       map[string]string     `yaml:"race"`
	Smoking    map[string]string     `yaml:"smoking"`
	Stage      map[string]StageLabel `yaml:"stage"`
	CancerType map[string]string     `yaml:"cancer_type"`
	// PublishedCancerTypes are the ICD-O-3 codes the published-2026 preset keeps.
	PublishedCancerTypes []string `yaml:"published_cancer_types"`
	// SliceNumMissing are the nlst_ctab.sct_slice_num codes that mean "missing", not a slice.
	SliceNumMissing []string `yaml:"sct_slice_num_missing"`
}

// StageLabel is an AJCC stage code's label; Index (0..6 for IA..IV) is set only for the stages
// the published connectome keeps.
type StageLabel struct {
	Label string `yaml:"label"`
	Index *int   `yaml:"index"`
}

// LoadLabels decodes the embedded configs/nlst-labels.yaml.
func LoadLabels() (*Labels, error) {
	var l Labels
	if err := yamlconf.Decode("configs/nlst-labels.yaml", configs.NLSTLabels(), &l); err != nil {
		return nil, fmt.Errorf("load NLST labels: %w", err)
	}
	return &l, nil
}

// validStage reports whether code is one of the stages the published preset keeps.
func (l *Labels) validStage(code string) bool {
	s, ok := l.Stage[code]
	return ok && s.Index != nil
}

func (l *Labels) publishedCancerType(code string) bool {
	for _, c := range l.PublishedCancerTypes {
		if c == code {
			return true
		}
	}
	return false
}

// stageByIndex returns the code of the valid stage with index i (0..6), for files that
// carry the published 0..6 value.
func (l *Labels) stageByIndex(i int) (string, bool) {
	for code, s := range l.Stage {
		if s.Index != nil && *s.Index == i {
			return code, true
		}
	}
	return "", false
}

// prsnRow is one nlst_prsn row as the query returns it (codes as strings; "" for NULL).
type prsnRow struct {
	PatientID, Age, Gender, Race, Cigsmok, DeStag, DeType string
}

// clinical maps a participant row to clinical.arrow. An unknown stage code is an error (the
// caller records it as the patient's failure); other unknown codes give an empty label.
func (l *Labels) clinical(r prsnRow) (tables.Clinical, error) {
	c := tables.Clinical{
		PatientID:      r.PatientID,
		Age:            parseAge(r.Age),
		Sex:            l.Sex[r.Gender],
		Race:           l.Race[r.Race],
		Smoking:        l.Smoking[r.Cigsmok],
		CancerTypeCode: r.DeType,
		CancerType:     l.CancerType[r.DeType],
		StageCode:      r.DeStag,
	}
	if r.DeStag != "" {
		s, ok := l.Stage[r.DeStag]
		if !ok {
			return c, fmt.Errorf("unknown AJCC stage code de_stag=%q (known: configs/nlst-labels.yaml)", r.DeStag)
		}
		c.Stage = s.Label
	}
	return c, nil
}

// parseAge reads an age in years ("65" or "65.0"); -1 when missing or implausible.
func parseAge(s string) int32 {
	a, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || a < 0 || a > 130 || a != math.Trunc(a) {
		return -1
	}
	return int32(a)
}
