-- NLST screening-CT abnormalities of the given patients: the key slice (sct_slice_num, the
-- image number where the abnormality is largest) per screening year. Only the
-- published-2026 preset uses it (idc-data-model.md §6.1 step 2).
-- Parameters: @patient_ids ARRAY<STRING>.
SELECT
  dicom_patient_id AS patient_id,
  CAST(study_yr AS STRING) AS study_yr,
  CAST(sct_slice_num AS STRING) AS sct_slice_num,
  CAST(sct_epi_loc AS STRING) AS sct_epi_loc
FROM `{{.Project}}.{{.Release}}_clinical.nlst_ctab`
WHERE dicom_patient_id IN UNNEST(@patient_ids)
ORDER BY patient_id, study_yr, sct_slice_num
