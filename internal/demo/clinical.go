package demo

import "strconv"

// Clinical holds the cohort's rows of IDC's NLST clinical tables, with the column names of
// idc_vNN_clinical.nlst_prsn and nlst_ctab. Values are strings, as IDC stores them.
type Clinical struct {
	Prsn []PrsnRow `json:"nlst_prsn"`
	Ctab []CtabRow `json:"nlst_ctab"`
}

// PrsnRow is one participant (nlst_prsn).
type PrsnRow struct {
	DicomPatientID string `json:"dicom_patient_id"`
	PID            string `json:"pid"`
	Age            string `json:"age"`
	Gender         string `json:"gender"`  // 1 male, 2 female
	Race           string `json:"race"`    // 1 White, 2 Black, 3 Asian, 6 more than one, 7 unknown
	Cigsmok        string `json:"cigsmok"` // 1 current, 0 former
	DeType         string `json:"de_type"` // ICD-O-3 morphology
	DeStag         string `json:"de_stag"` // AJCC stage code
}

// CtabRow is one screening-CT abnormality (nlst_ctab): the tumour's key slice.
type CtabRow struct {
	DicomPatientID string `json:"dicom_patient_id"`
	PID            string `json:"pid"`
	StudyYr        string `json:"study_yr"`
	SctAbNum       string `json:"sct_ab_num"`
	SctSliceNum    string `json:"sct_slice_num"` // InstanceNumber of the slice through the centre
	SctEpiLoc      string `json:"sct_epi_loc"`   // lobe
	SctLongDia     string `json:"sct_long_dia"`  // mm
	SctPreAtt      string `json:"sct_pre_att"`   // predominant attenuation: 1 soft tissue, 2 ground glass, 3 mixed
	SctMargins     string `json:"sct_margins"`   // 1 spiculated, 2 smooth, 3 poorly defined
}

func clinicalRows(patients []*patient) Clinical {
	var c Clinical
	for _, p := range patients {
		pid := p.PatientID
		c.Prsn = append(c.Prsn, PrsnRow{
			DicomPatientID: pid, PID: pid, Age: itoa(p.Age), Gender: p.Gender, Race: p.Race,
			Cigsmok: p.Cigsmok, DeType: p.DeType, DeStag: p.DeStag,
		})
		for _, t := range p.Tumours {
			att := map[string]string{KindSolid: "1", KindGroundGlass: "2", KindPartSolid: "3"}[t.Kind]
			margins := "2"
			switch t.Texture {
			case TextureSpiculated:
				margins = "1"
			case TextureLobulated, TextureHeterogeneous:
				margins = "3"
			}
			c.Ctab = append(c.Ctab, CtabRow{
				DicomPatientID: pid, PID: pid, StudyYr: itoa(p.StudyYear), SctAbNum: itoa(t.Index + 1),
				SctSliceNum: itoa(p.CT.Instances[p.CT.nearestSlice(t.Centre[2])].Number),
				SctEpiLoc:   t.Lobe, SctLongDia: itoa(int(t.Diameter + 0.5)), SctPreAtt: att, SctMargins: margins,
			})
		}
	}
	return c
}

func itoa(i int) string { return strconv.Itoa(i) }
