-- NLST participant rows (demographics, AJCC stage, ICD-O-3 morphology) of the given patients.
-- Columns are cast to STRING so that the codes compare the same whether a release stores
-- them as STRING or INT64; configs/nlst-labels.yaml maps them to labels.
-- Parameters: @patient_ids ARRAY<STRING>.
SELECT
  dicom_patient_id AS patient_id,
  CAST(age AS STRING) AS age,
  CAST(gender AS STRING) AS gender,
  CAST(race AS STRING) AS race,
  CAST(cigsmok AS STRING) AS cigsmok,
  CAST(de_stag AS STRING) AS de_stag,
  CAST(de_type AS STRING) AS de_type
FROM `{{.Project}}.{{.Release}}_clinical.nlst_prsn`
WHERE dicom_patient_id IN UNNEST(@patient_ids)
ORDER BY patient_id
