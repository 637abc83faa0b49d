// Fixture tables: this file builds IDC BigQuery fixture tables from synthetic descriptions of CT
// series, NLST-Sybil SR annotations and NLST clinical rows: dicom_all rows in the real
// nested schema (REPEATED RECORD ContentSequence four levels deep, REPEATED STRING geometry,
// evidence sequence, crdc uuids, gcs_url, instance_size), plus nlst_prsn, nlst_ctab and
// column_metadata rows of the clinical dataset. Each table comes as a bigquery.Schema and
// newline-delimited JSON, ready for a BigQuery load job (the only way the emulator keeps
// nested REPEATED modes; ../shared/docs/toolchain.md §9). It does not import the emulator,
// so the offline demo and tests can share it.

package idcfake

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"cloud.google.com/go/bigquery"
)

// Fixture describes one IDC release's worth of synthetic data.
type Fixture struct {
	Release  string // dataset name, e.g. idc_v23; the clinical dataset is Release+"_clinical"
	Patients []Patient
	// Columns overrides the column_metadata rows; nil means DefaultColumns().
	Columns []Column
	// AnalysisResultID of the SRs; "" means the release's own (StyleOf).
	AnalysisResultID string
	// Project holds the datasets; "" → bigquery-public-data. column_metadata's table_name
	// is the table's full path in it, as IDC writes it.
	Project string
}

// Patient is one NLST participant.
type Patient struct {
	ID string
	// Collection is the IDC collection_id of the patient's rows; "" → "nlst".
	Collection string
	Prsn       *Prsn // nil: no nlst_prsn row
	Ctab       []Ctab
	Series     []Series
}

// Prsn is an nlst_prsn row; empty strings are NULL. Age is written as INT64.
type Prsn struct {
	Age                                   int // 0 = NULL
	Gender, Race, Cigsmok, DeStag, DeType string
}

// Ctab is an nlst_ctab row (the key slice of one abnormality).
type Ctab struct {
	StudyYr, SliceNum, EpiLoc string
}

// Series is a CT series on a regular grid: slice k (0-based) has InstanceNumber k+1 and
// IPP = Origin + k·Step·normal (Step may be negative, as in most NLST series).
type Series struct {
	UID          string
	StudyUID     string // "" → UID + ".study"
	StudyYear    int    // 0..2 → StudyDate 1999-01-02, 2000-01-02, 2001-01-02
	Slices       int
	Origin       [3]float64
	Step         float64    // mm between consecutive instance numbers along the normal
	IOP          [6]float64 // zero → axial (1,0,0,0,1,0)
	PixelSpacing [2]float64 // row, column spacing; zero → 0.7 mm
	Rows, Cols   int        // zero → 512
	// NullGeometry lists slice indices stored without ImagePositionPatient.
	NullGeometry []int
	SR           *SR // the NLST-Sybil annotation of this series, if any
}

// SR is the NLST-Sybil SR of a series.
type SR struct {
	Template string // "" → "1500"
	Boxes    []Box
}

// Box is one measurement group: a rectangle in pixel coordinates (corner convention) on
// slice Slice. The zero value of the other fields gives a well-formed NLST-Sybil group.
type Box struct {
	Slice          int
	X0, Y0, X1, Y1 float64
	GraphicType    string // "" → POLYLINE
	NoGraphicData  bool
	// SOP overrides the referenced image (e.g. a SOP that is not in the series).
	SOP string
	// TrackingUID overrides the derived tracking UID.
	TrackingUID string
}

// Column is one column_metadata row.
type Column struct {
	Table, Column, Label string
	Values               map[string]string // option_code → option_description
}

// Table is one fixture table: where it goes, its schema and its rows as NDJSON.
type Table struct {
	Dataset, Name string
	Schema        bigquery.Schema
	NDJSON        []byte
	Rows          int
}

// SOPUID is the SOP instance UID of slice k.
func (s *Series) SOPUID(k int) string { return fmt.Sprintf("%s.%d", s.UID, k+1) }

// SRSOPUID and SRSeriesUID are the UIDs of the series' SR.
func (s *Series) SRSOPUID() string    { return s.UID + ".9.1" }
func (s *Series) SRSeriesUID() string { return s.UID + ".9" }

// StudyInstanceUID returns the study UID.
func (s *Series) StudyInstanceUID() string {
	if s.StudyUID != "" {
		return s.StudyUID
	}
	return s.UID + ".0"
}

// Orientation returns the IOP (axial by default).
func (s *Series) Orientation() [6]float64 {
	if s.IOP == ([6]float64{}) {
		return [6]float64{1, 0, 0, 0, 1, 0}
	}
	return s.IOP
}

// Spacing returns the pixel spacing (row, column).
func (s *Series) Spacing() [2]float64 {
	if s.PixelSpacing == ([2]float64{}) {
		return [2]float64{0.7, 0.7}
	}
	return s.PixelSpacing
}

func (s *Series) size() (int, int) {
	r, c := s.Rows, s.Cols
	if r == 0 {
		r = 512
	}
	if c == 0 {
		c = 512
	}
	return r, c
}

// IPP returns slice k's ImagePositionPatient.
func (s *Series) IPP(k int) [3]float64 {
	o := s.Orientation()
	n := [3]float64{o[1]*o[5] - o[2]*o[4], o[2]*o[3] - o[0]*o[5], o[0]*o[4] - o[1]*o[3]}
	return [3]float64{s.Origin[0] + float64(k)*s.Step*n[0], s.Origin[1] + float64(k)*s.Step*n[1], s.Origin[2] + float64(k)*s.Step*n[2]}
}

// TrackingUID returns box i's tracking UID.
func (s *Series) TrackingUID(i int) string {
	if s.SR.Boxes[i].TrackingUID != "" {
		return s.SR.Boxes[i].TrackingUID
	}
	return fmt.Sprintf("%s.9.2.%d", s.UID, i+1)
}

// uuid derives a stable UUID-shaped id from a name (as IDC's crdc uuids look).
func uuid(name string) string {
	h := sha1.Sum([]byte(name))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// CRDCSeriesUUID and CRDCInstanceUUID are the bucket folder and object names.
func (s *Series) CRDCSeriesUUID() string        { return uuid("series:" + s.UID) }
func (s *Series) CRDCInstanceUUID(k int) string { return uuid("instance:" + s.SOPUID(k)) }

// GCSURL is slice k's object URL.
func (s *Series) GCSURL(k int) string {
	return fmt.Sprintf("gs://idc-open-data/%s/%s.dcm", s.CRDCSeriesUUID(), s.CRDCInstanceUUID(k))
}

// InstanceSize is slice k's (synthetic) object size in bytes.
func (s *Series) InstanceSize(k int) int64 { return 525_000 + int64(k) }

func studyDate(year int) string { return fmt.Sprintf("%d-01-02", 1999+year) }

func ds(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Tables builds every table of the fixture.
func (f *Fixture) Tables() ([]Table, error) {
	dicomAll, err := f.dicomAll()
	if err != nil {
		return nil, err
	}
	clin := f.Release + "_clinical"
	prsn, ctab := f.clinical()
	cols := f.Columns
	if cols == nil {
		cols = DefaultColumns()
	}
	project := f.Project
	if project == "" {
		project = "bigquery-public-data"
	}
	meta := columnRows(cols, project+"."+clin+".")
	out := []Table{
		{Dataset: f.Release, Name: "dicom_all", Schema: DicomAllSchema(StyleOf(f.Release))},
		{Dataset: clin, Name: "nlst_prsn", Schema: PrsnSchema()},
		{Dataset: clin, Name: "nlst_ctab", Schema: CtabSchema()},
		{Dataset: clin, Name: "column_metadata", Schema: ColumnMetadataSchema()},
	}
	for i, rows := range [][]map[string]any{dicomAll, prsn, ctab, meta} {
		var buf bytes.Buffer
		for _, r := range rows {
			b, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("fixture %s row: %w", out[i].Name, err)
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
		out[i].NDJSON, out[i].Rows = buf.Bytes(), len(rows)
	}
	return out, nil
}

func (f *Fixture) dicomAll() ([]map[string]any, error) {
	var rows []map[string]any
	arid := f.AnalysisResultID
	if arid == "" {
		arid = StyleOf(f.Release).AnalysisResultID
	}
	for pi := range f.Patients {
		p := &f.Patients[pi]
		coll := p.Collection
		if coll == "" {
			coll = "nlst"
		}
		for si := range p.Series {
			s := &p.Series[si]
			if s.Slices <= 0 {
				return nil, fmt.Errorf("fixture series %s: no slices", s.UID)
			}
			nullGeom := map[int]bool{}
			for _, k := range s.NullGeometry {
				nullGeom[k] = true
			}
			rws, cls := s.size()
			sizeType := StyleOf(f.Release).InstanceSizeType
			iop := s.Orientation()
			sp := s.Spacing()
			for k := 0; k < s.Slices; k++ {
				r := map[string]any{
					"collection_id": coll, "Modality": "CT", "PatientID": p.ID,
					"StudyInstanceUID": s.StudyInstanceUID(), "StudyDate": studyDate(s.StudyYear),
					"SeriesInstanceUID": s.UID, "SOPInstanceUID": s.SOPUID(k),
					"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SeriesNumber": "2",
					"InstanceNumber":          strconv.Itoa(k + 1),
					"ImageOrientationPatient": []string{ds(iop[0]), ds(iop[1]), ds(iop[2]), ds(iop[3]), ds(iop[4]), ds(iop[5])},
					"PixelSpacing":            []string{ds(sp[0]), ds(sp[1])},
					"SliceThickness":          "2.5", "Rows": rws, "Columns": cls,
					"crdc_study_uuid": uuid("study:" + s.StudyInstanceUID()), "crdc_series_uuid": s.CRDCSeriesUUID(),
					"crdc_instance_uuid": s.CRDCInstanceUUID(k), "gcs_url": s.GCSURL(k),
					"aws_url":       fmt.Sprintf("s3://idc-open-data/%s/%s.dcm", s.CRDCSeriesUUID(), s.CRDCInstanceUUID(k)),
					"instance_size": typed(sizeType, s.InstanceSize(k)),
				}
				if !nullGeom[k] {
					ipp := s.IPP(k)
					r["ImagePositionPatient"] = []string{ds(ipp[0]), ds(ipp[1]), ds(ipp[2])}
				}
				rows = append(rows, r)
			}
			if s.SR != nil {
				rows = append(rows, s.srRow(p.ID, coll, arid, f.Release))
			}
		}
	}
	return rows, nil
}

func code(v, scheme, meaning string) []map[string]any {
	return []map[string]any{{"CodeValue": v, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}}
}

// srRow builds the SR instance the way highdicom wrote the NLST-Sybil SRs
// (idc-data-model §1.2): one TID 1410 group per box.
func (s *Series) srRow(patient, collection, arid, release string) map[string]any {
	tmpl := s.SR.Template
	if tmpl == "" {
		tmpl = "1500"
	}
	var groups []any
	var refSOPs []any
	seen := map[string]bool{}
	for i, b := range s.SR.Boxes {
		sop := b.SOP
		if sop == "" {
			sop = s.SOPUID(b.Slice)
		}
		if !seen[sop] {
			seen[sop] = true
			refSOPs = append(refSOPs, map[string]any{"ReferencedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "ReferencedSOPInstanceUID": sop})
		}
		gt := b.GraphicType
		if gt == "" {
			gt = "POLYLINE"
		}
		scoord := map[string]any{
			"RelationshipType": "CONTAINS", "ValueType": "SCOORD", "GraphicType": gt,
			"ConceptNameCodeSequence": code("111030", "DCM", "Image Region"),
			"ContentSequence": []any{map[string]any{
				"RelationshipType": "SELECTED FROM", "ValueType": "IMAGE",
				"ConceptNameCodeSequence": code("260753009", "SCT", "Source"),
				"ReferencedSOPSequence": []any{map[string]any{
					"ReferencedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "ReferencedSOPInstanceUID": sop}},
			}},
		}
		if !b.NoGraphicData {
			scoord["GraphicData"] = []float64{b.X0, b.Y0, b.X1, b.Y0, b.X1, b.Y1, b.X0, b.Y1, b.X0, b.Y0}
		}
		groups = append(groups, map[string]any{
			"RelationshipType": "CONTAINS", "ValueType": "CONTAINER",
			"ConceptNameCodeSequence": code("125007", "DCM", "Measurement Group"),
			"ContentSequence": []any{
				map[string]any{"RelationshipType": "HAS OBS CONTEXT", "ValueType": "TEXT",
					"ConceptNameCodeSequence": code("112039", "DCM", "Tracking Identifier"),
					"TextValue":               fmt.Sprintf("Bounding box #%d", i+1)},
				map[string]any{"RelationshipType": "HAS OBS CONTEXT", "ValueType": "UIDREF",
					"ConceptNameCodeSequence": code("112040", "DCM", "Tracking Unique Identifier"),
					"UID":                     s.TrackingUID(i)},
				map[string]any{"RelationshipType": "CONTAINS", "ValueType": "CODE",
					"ConceptNameCodeSequence": code("121071", "DCM", "Finding"),
					"ConceptCodeSequence":     code("52988006", "SCT", "Lesion")},
				map[string]any{"RelationshipType": "HAS CONCEPT MOD", "ValueType": "CODE",
					"ConceptNameCodeSequence": code("363698007", "SCT", "Finding Site"),
					"ConceptCodeSequence":     code("39607008", "SCT", "Lung")},
				map[string]any{"RelationshipType": "HAS CONCEPT MOD", "ValueType": "CODE",
					"ConceptNameCodeSequence": code("130400", "DCM", "Geometric purpose of region"),
					"ConceptCodeSequence":     code("75958009", "SCT", "Bounded by")},
				scoord,
			},
		})
	}
	content := []any{
		map[string]any{"RelationshipType": "HAS CONCEPT MOD", "ValueType": "CODE",
			"ConceptNameCodeSequence": code("121049", "DCM", "Language of Content Item and Descendants"),
			"ConceptCodeSequence":     code("en-US", "RFC5646", "English (United States)")},
		map[string]any{"RelationshipType": "HAS OBS CONTEXT", "ValueType": "PNAME",
			"ConceptNameCodeSequence": code("121008", "DCM", "Person Observer Name")},
		map[string]any{"RelationshipType": "HAS CONCEPT MOD", "ValueType": "CODE",
			"ConceptNameCodeSequence": code("121058", "DCM", "Procedure reported"),
			"ConceptCodeSequence":     code("363679005", "SCT", "Imaging procedure")},
		map[string]any{"RelationshipType": "CONTAINS", "ValueType": "CONTAINER",
			"ConceptNameCodeSequence": code("126010", "DCM", "Imaging Measurements"),
			"ContentSequence":         groups},
	}
	return map[string]any{
		"collection_id": collection, "analysis_result_id": arid, "Modality": "SR", "PatientID": patient,
		"StudyInstanceUID": s.StudyInstanceUID(), "StudyDate": studyDate(s.StudyYear),
		"SeriesInstanceUID": s.SRSeriesUID(), "SOPInstanceUID": s.SRSOPUID(),
		"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.34", "SeriesNumber": "102",
		"SeriesDescription": "Sybil lesion bounding box", "InstanceNumber": "1",
		"crdc_study_uuid": uuid("study:" + s.StudyInstanceUID()), "crdc_series_uuid": uuid("series:" + s.SRSeriesUID()),
		"crdc_instance_uuid":      uuid("instance:" + s.SRSOPUID()),
		"gcs_url":                 fmt.Sprintf("gs://idc-open-data/%s/%s.dcm", uuid("series:"+s.SRSeriesUID()), uuid("instance:"+s.SRSOPUID())),
		"instance_size":           typed(StyleOf(release).InstanceSizeType, 40_000),
		"ContentTemplateSequence": []any{map[string]any{"MappingResource": "DCMR", "TemplateIdentifier": tmpl}},
		"CurrentRequestedProcedureEvidenceSequence": []any{map[string]any{
			"StudyInstanceUID": s.StudyInstanceUID(),
			"ReferencedSeriesSequence": []any{map[string]any{
				"SeriesInstanceUID": s.UID, "ReferencedSOPSequence": refSOPs}},
		}},
		"ContentSequence": content,
	}
}

func (f *Fixture) clinical() (prsn, ctab []map[string]any) {
	prsnInt, ctabInt := IntegerColumns(PrsnSchema()), IntegerColumns(CtabSchema())
	for _, p := range f.Patients {
		if p.Prsn != nil {
			r := map[string]any{"dicom_patient_id": p.ID, "pid": Numeric(p.ID), "source_batch": 0}
			if p.Prsn.Age != 0 {
				r["age"] = p.Prsn.Age
			}
			for k, v := range map[string]string{"gender": p.Prsn.Gender, "race": p.Prsn.Race, "cigsmok": p.Prsn.Cigsmok,
				"de_stag": p.Prsn.DeStag, "de_type": p.Prsn.DeType} {
				if v != "" {
					r[k] = columnValue(prsnInt[k], v)
				}
			}
			prsn = append(prsn, r)
		}
		for _, c := range p.Ctab {
			r := map[string]any{"dicom_patient_id": p.ID, "pid": Numeric(p.ID), "source_batch": 0}
			for k, v := range map[string]string{"study_yr": c.StudyYr, "sct_slice_num": c.SliceNum, "sct_epi_loc": c.EpiLoc} {
				if v != "" {
					r[k] = columnValue(ctabInt[k], v)
				}
			}
			ctab = append(ctab, r)
		}
	}
	return prsn, ctab
}

// Numeric returns s as an INT64 value when it is one; a value that is not (a test's bad
// code) stays text, which the load job then rejects or the query's CAST sees.
func Numeric(s string) any {
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
		return n
	}
	return s
}

func columnValue(integer bool, v string) any {
	if integer {
		return Numeric(v)
	}
	return v
}

// typed writes n as the column type t holds it (INT64 or STRING).
func typed(t bigquery.FieldType, n int64) any {
	if t == bigquery.StringFieldType {
		return strconv.FormatInt(n, 10)
	}
	return n
}

// columnRows makes column_metadata rows; tablePrefix is "<project>.<dataset>.", because IDC
// writes table_name as the full path (bigquery-public-data.idc_v23_clinical.nlst_prsn).
func columnRows(cols []Column, tablePrefix string) []map[string]any {
	var out []map[string]any
	for _, c := range cols {
		var vals []any
		for code, d := range c.Values {
			vals = append(vals, map[string]any{"option_code": code, "option_description": d})
		}
		r := map[string]any{"collection_id": "nlst", "table_name": tablePrefix + c.Table, "column": c.Column,
			"column_label": c.Label, "data_type": "STRING"}
		if len(vals) > 0 {
			r["values"] = vals
		}
		out = append(out, r)
	}
	return out
}

// DefaultColumns describes the NLST columns the cohort reads, with the participant
// dictionary's codes (NLST prsn data dictionary; see configs/nlst-labels.yaml).
func DefaultColumns() []Column {
	return []Column{
		{Table: "nlst_prsn", Column: "age", Label: "Age at randomization (in years)"},
		{Table: "nlst_prsn", Column: "gender", Label: "Gender", Values: map[string]string{"1": "Male", "2": "Female"}},
		{Table: "nlst_prsn", Column: "race", Label: "Race", Values: map[string]string{"1": "White", "2": "Black or African-American",
			"3": "Asian", "4": "American Indian or Alaskan Native", "5": "Native Hawaiian or Other Pacific Islander",
			"6": "More than one race", "7": "Participant refused to answer", "95": "Missing data form", "96": "Missing",
			"98": "Missing", "99": "Unknown/ decline to answer"}},
		{Table: "nlst_prsn", Column: "cigsmok", Label: "Smoking status at T0", Values: map[string]string{"0": "Former", "1": "Current"}},
		{Table: "nlst_prsn", Column: "de_stag", Label: "AJCC stage", Values: map[string]string{"110": "Stage IA", "120": "Stage IB",
			"210": "Stage IIA", "220": "Stage IIB", "310": "Stage IIIA", "320": "Stage IIIB", "400": "Stage IV",
			"888": "TNM not available", "900": "Occult Carcinoma", "994": "Carcinoid, cannot be assessed",
			"999": "Unknown, cannot be assessed", ".M": "Missing", ".N": "Not Applicable"}},
		{Table: "nlst_prsn", Column: "de_type", Label: "ICD-O-3 morphology"},
		{Table: "nlst_ctab", Column: "study_yr", Label: "Study year of screen"},
		{Table: "nlst_ctab", Column: "sct_slice_num", Label: "Image number of the slice with the largest dimension"},
		{Table: "nlst_ctab", Column: "sct_epi_loc", Label: "Location of abnormality"},
	}
}
