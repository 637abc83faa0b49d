-- NLST-Sybil SR objects: one row per SR instance (one SR per annotated CT series), with
-- the CT series it annotates and its whole content tree as JSON.
-- Why JSON: the boxes sit four levels deep in ContentSequence. BigQuery could UNNEST them,
-- but the emulator the tests use cannot scan two levels of UNNEST (docs: toolchain.md §9),
-- so both return the tree with TO_JSON_STRING and Go walks it (package sr). One file, one
-- behaviour. Placeholders {{.Project}} and {{.Release}} are validated identifiers, never user text.
-- Parameters: @analysis_result_id STRING ('NLST-Sybil').
SELECT
  PatientID AS patient_id,
  StudyInstanceUID AS study_instance_uid,
  CAST(StudyDate AS STRING) AS study_date,
  SeriesInstanceUID AS sr_series_instance_uid,
  SOPInstanceUID AS sr_sop_instance_uid,
  TO_JSON_STRING(CurrentRequestedProcedureEvidenceSequence) AS evidence_json,
  TO_JSON_STRING(ContentTemplateSequence) AS template_json,
  TO_JSON_STRING(ContentSequence) AS content_json
FROM `{{.Project}}.{{.Release}}.dicom_all`
WHERE analysis_result_id = @analysis_result_id
  AND Modality = 'SR'
ORDER BY patient_id, sr_sop_instance_uid
