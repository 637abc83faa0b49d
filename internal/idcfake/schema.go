package idcfake

import "cloud.google.com/go/bigquery"

func str(name string) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: name, Type: bigquery.StringFieldType}
}

func integer(name string) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: name, Type: bigquery.IntegerFieldType}
}

func repeated(f *bigquery.FieldSchema) *bigquery.FieldSchema { f.Repeated = true; return f }

func record(name string, fields ...*bigquery.FieldSchema) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: name, Type: bigquery.RecordFieldType, Repeated: true, Schema: fields}
}

// codeSeq is a code sequence with every field dicom_all's code sequences carry, most of them
// NULL in the SRs.
func codeSeq(name string) *bigquery.FieldSchema {
	return record(name, str("CodeValue"), str("CodingSchemeDesignator"), str("CodingSchemeVersion"), str("CodeMeaning"),
		str("LongCodeValue"), str("URNCodeValue"), str("ContextIdentifier"), str("ContextUID"), str("MappingResource"),
		str("MappingResourceUID"), str("ContextGroupVersion"))
}

func float(name string) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: name, Type: bigquery.FloatFieldType}
}

func refSOPSeq() *bigquery.FieldSchema {
	return record("ReferencedSOPSequence", str("ReferencedSOPClassUID"), str("ReferencedSOPInstanceUID"))
}

// contentSeq is ContentSequence nested depth levels deep. dicom_all's ContentSequence is the
// union of every SR attribute IDC holds, so each item of a Sybil SR comes back with dozens of
// NULL fields (numeric, date, person-name, waveform, segmentation references) beside the few
// it sets; this schema carries a representative share of them, of every BigQuery type, so
// that the stage's JSON walk meets the NULLs, numbers and nested records IDC returns.
func contentSeq(depth int) *bigquery.FieldSchema {
	fields := []*bigquery.FieldSchema{
		str("RelationshipType"), str("ValueType"), codeSeq("ConceptNameCodeSequence"), codeSeq("ConceptCodeSequence"),
		str("TextValue"), str("UID"), str("GraphicType"),
		repeated(float("GraphicData")),
		record("ReferencedSOPSequence", str("ReferencedSOPClassUID"), str("ReferencedSOPInstanceUID"),
			repeated(integer("ReferencedFrameNumber")), repeated(integer("ReferencedSegmentNumber")),
			record("ReferencedSOPSequence", str("ReferencedSOPClassUID"), str("ReferencedSOPInstanceUID"))),
		str("ContinuityOfContent"), str("DateTime"), &bigquery.FieldSchema{Name: "Date", Type: bigquery.DateFieldType},
		str("Time"), str("PersonName"), str("ObservationDateTime"), str("ObservationUID"),
		repeated(integer("ReferencedContentItemIdentifier")), str("FiducialUID"), str("ReferencedFrameOfReferenceUID"),
		str("TemporalRangeType"), repeated(float("ReferencedTimeOffsets")), repeated(integer("ReferencedSamplePositions")),
		record("MeasuredValueSequence", float("NumericValue"), repeated(float("FloatingPointValue")),
			codeSeq("MeasurementUnitsCodeSequence")),
		codeSeq("NumericValueQualifierCodeSequence"),
		record("ContentTemplateSequence", str("MappingResource"), str("TemplateIdentifier")),
	}
	if depth > 1 {
		fields = append(fields, contentSeq(depth-1))
	}
	return record("ContentSequence", fields...)
}

// DicomAllSchema is the part of IDC's dicom_all schema the cohort reads, with the real
// modes and types of the release style st: DS multi-values as REPEATED STRING, SR sequences
// as REPEATED RECORD, instance_size as the style says.
func DicomAllSchema(st Style) bigquery.Schema {
	return bigquery.Schema{
		str("collection_id"), str("analysis_result_id"), str("Modality"), str("PatientID"),
		str("StudyInstanceUID"), &bigquery.FieldSchema{Name: "StudyDate", Type: bigquery.DateFieldType},
		str("SeriesInstanceUID"), str("SOPInstanceUID"), str("SOPClassUID"), str("SeriesNumber"),
		str("SeriesDescription"), str("InstanceNumber"),
		repeated(str("ImagePositionPatient")), repeated(str("ImageOrientationPatient")), repeated(str("PixelSpacing")),
		str("SliceThickness"), integer("Rows"), integer("Columns"),
		str("crdc_study_uuid"), str("crdc_series_uuid"), str("crdc_instance_uuid"), str("gcs_url"), str("aws_url"),
		{Name: "instance_size", Type: st.InstanceSizeType},
		record("ContentTemplateSequence", str("MappingResource"), str("TemplateIdentifier")),
		record("CurrentRequestedProcedureEvidenceSequence", str("StudyInstanceUID"),
			record("ReferencedSeriesSequence", str("SeriesInstanceUID"), refSOPSeq())),
		contentSeq(4),
	}
}

// PrsnSchema is the part of nlst_prsn the cohort reads. The coded demographics are numeric
// in IDC (INT64), as NLST's dictionary defines them; the stage and morphology codes are
// STRING, so that the dictionary's ".M"/".N" missing codes fit.
func PrsnSchema() bigquery.Schema {
	return bigquery.Schema{str("dicom_patient_id"), integer("pid"), integer("source_batch"), integer("age"),
		integer("gender"), integer("race"), integer("cigsmok"), str("de_stag"), str("de_type")}
}

// CtabSchema is the part of nlst_ctab the cohort reads; study_yr is numeric in IDC.
func CtabSchema() bigquery.Schema {
	return bigquery.Schema{str("dicom_patient_id"), integer("pid"), integer("source_batch"),
		integer("study_yr"), str("sct_slice_num"), str("sct_epi_loc")}
}

// IntegerColumns names the INT64 columns of a schema, for writers that hold their values
// as text (the fixture's rows, the demo's clinical rows).
func IntegerColumns(s bigquery.Schema) map[string]bool {
	out := map[string]bool{}
	for _, f := range s {
		if f.Type == bigquery.IntegerFieldType && !f.Repeated {
			out[f.Name] = true
		}
	}
	return out
}

// ColumnMetadataSchema is IDC's clinical column_metadata schema.
func ColumnMetadataSchema() bigquery.Schema {
	return bigquery.Schema{str("collection_id"), str("table_name"), str("column"), str("column_label"), str("data_type"),
		record("values", str("option_code"), str("option_description"))}
}
