-- NLST-Sybil SR objects: one row per SR instance (one SR per annotated CT series), with
-- where its object lies in the bucket and, when the template field SRContent is set, the CT series it
-- annotates and its whole content tree as JSON.
-- Where the content comes from (cohort.sr_content): by default the stage reads each SR's
-- content from its object in the bucket (gcs_url), because ContentSequence is by far the
-- widest column of dicom_all and BigQuery bills it for every SR in the collection's blocks,
-- about 250 000 TotalSegmentator SRs under NLST, not just the 970 selected here
-- (docs/cohort-policies.md, "Bytes scanned"). sr_content: bigquery reads it here instead.
-- Why JSON: the boxes sit four levels deep in ContentSequence. BigQuery could UNNEST them,
-- but the emulator the tests use cannot scan two levels of UNNEST (docs: toolchain.md §9),
-- so both return the tree with TO_JSON_STRING and Go walks it (package sr); an SR read from
-- its object is turned into the same JSON (sr.ReadDICOM). One parser, one behaviour.
-- Placeholders {{.Project}} and {{.Release}} are validated identifiers, never user text.
-- Which SRs: analysis_result_id holds the analysis result's name (NLST-Sybil) up to IDC v23
-- and an internal id (nlst_sybil) from v24 on (etl_flow, 2026-05: "dicom_all
-- analysis_result_id column had analysis_result_names"); the caller passes both, so the
-- same query selects the same SRs in every release. The matched value comes back so the
-- stage can record it.
-- Cost: dicom_all is clustered on collection_id, and the filter on it lets BigQuery read only
-- the collection's blocks instead of every SR in IDC.
-- Parameters: @analysis_result_ids ARRAY<STRING> (e.g. ['NLST-Sybil', 'nlst_sybil']),
--             @collection_id STRING ('nlst').
SELECT
  analysis_result_id,
  PatientID AS patient_id,
  StudyInstanceUID AS study_instance_uid,
  CAST(StudyDate AS STRING) AS study_date,
  SeriesInstanceUID AS sr_series_instance_uid,
  SOPInstanceUID AS sr_sop_instance_uid,
  gcs_url,
  SAFE_CAST(instance_size AS INT64) AS instance_size{{if .SRContent}},
  TO_JSON_STRING(CurrentRequestedProcedureEvidenceSequence) AS evidence_json,
  TO_JSON_STRING(ContentTemplateSequence) AS template_json,
  TO_JSON_STRING(ContentSequence) AS content_json{{end}}
FROM `{{.Project}}.{{.Release}}.dicom_all`
WHERE collection_id = @collection_id
  AND analysis_result_id IN UNNEST(@analysis_result_ids)
  AND Modality = 'SR'
ORDER BY patient_id, sr_sop_instance_uid
