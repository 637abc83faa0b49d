package idcfixture

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

func codeSeq(name string) *bigquery.FieldSchema {
	return record(name, str("CodeValue"), str("CodingSchemeDesignator"), str("CodeMeaning"))
}

func refSOPSeq() *bigquery.FieldSchema {
	return record("ReferencedSOPSequence", str("ReferencedSOPClassUID"), str("ReferencedSOPInstanceUID"))
}

// contentSeq is ContentSequence nested depth levels deep, with the fields SR content items
// use (a subset of dicom_all's union of all SR attributes).
func contentSeq(depth int) *bigquery.FieldSchema {
	fields := []*bigquery.FieldSchema{
		str("RelationshipType"), str("ValueType"), codeSeq("ConceptNameCodeSequence"), codeSeq("ConceptCodeSequence"),
		str("TextValue"), str("UID"), str("GraphicType"),
		repeated(&bigquery.FieldSchema{Name: "GraphicData", Type: bigquery.FloatFieldType}),
		refSOPSeq(),
	}
	if depth > 1 {
		fields = append(fields, contentSeq(depth-1))
	}
	return record("ContentSequence", fields...)
}

// DicomAllSchema is the part of IDC's dicom_all schema the cohort reads, with the real
// modes: DS multi-values as REPEATED STRING, SR sequences as REPEATED RECORD.
func DicomAllSchema() bigquery.Schema {
	return bigquery.Schema{
		str("collection_id"), str("analysis_result_id"), str("Modality"), str("PatientID"),
		str("StudyInstanceUID"), &bigquery.FieldSchema{Name: "StudyDate", Type: bigquery.DateFieldType},
		str("SeriesInstanceUID"), str("SOPInstanceUID"), str("SOPClassUID"), str("SeriesNumber"),
		str("SeriesDescription"), str("InstanceNumber"),
		repeated(str("ImagePositionPatient")), repeated(str("ImageOrientationPatient")), repeated(str("PixelSpacing")),
		str("SliceThickness"), integer("Rows"), integer("Columns"),
		str("crdc_study_uuid"), str("crdc_series_uuid"), str("crdc_instance_uuid"), str("gcs_url"), str("aws_url"),
		integer("instance_size"),
		record("ContentTemplateSequence", str("MappingResource"), str("TemplateIdentifier")),
		record("CurrentRequestedProcedureEvidenceSequence", str("StudyInstanceUID"),
			record("ReferencedSeriesSequence", str("SeriesInstanceUID"), refSOPSeq())),
		contentSeq(4),
	}
}

// PrsnSchema is the part of nlst_prsn the cohort reads.
func PrsnSchema() bigquery.Schema {
	return bigquery.Schema{str("dicom_patient_id"), str("pid"), integer("source_batch"), integer("age"),
		str("gender"), str("race"), str("cigsmok"), str("de_stag"), str("de_type")}
}

// CtabSchema is the part of nlst_ctab the cohort reads.
func CtabSchema() bigquery.Schema {
	return bigquery.Schema{str("dicom_patient_id"), str("pid"), integer("source_batch"),
		str("study_yr"), str("sct_slice_num"), str("sct_epi_loc")}
}

// ColumnMetadataSchema is IDC's clinical column_metadata schema.
func ColumnMetadataSchema() bigquery.Schema {
	return bigquery.Schema{str("collection_id"), str("table_name"), str("column"), str("column_label"), str("data_type"),
		record("values", str("option_code"), str("option_description"))}
}
