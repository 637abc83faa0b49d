-- Every CT instance of the given series, with the geometry that orders and places its
-- slice and the object location in the IDC bucket. All instances, not only annotated
-- ones: preprocess needs every slice position to order the series; fetch downloads only
-- the slices a crop needs.
-- Geometry columns are REPEATED (DS values stored as STRING in dicom_all), so each element
-- is read with SAFE_OFFSET + SAFE_CAST: a missing value comes back NULL, and the stage
-- reports that instance instead of failing the query.
-- The collection_id filter prunes the scan to the collection's blocks (dicom_all is clustered
-- on it).
-- Parameters: @series_uids ARRAY<STRING>, @collection_id STRING ('nlst').
SELECT
  SeriesInstanceUID AS series_instance_uid,
  SOPInstanceUID AS sop_instance_uid,
  PatientID AS patient_id,
  StudyInstanceUID AS study_instance_uid,
  SAFE_CAST(InstanceNumber AS INT64) AS instance_number,
  SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(0)] AS FLOAT64) AS ipp_0,
  SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(1)] AS FLOAT64) AS ipp_1,
  SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(2)] AS FLOAT64) AS ipp_2,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(0)] AS FLOAT64) AS iop_0,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(1)] AS FLOAT64) AS iop_1,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(2)] AS FLOAT64) AS iop_2,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(3)] AS FLOAT64) AS iop_3,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(4)] AS FLOAT64) AS iop_4,
  SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(5)] AS FLOAT64) AS iop_5,
  SAFE_CAST(PixelSpacing[SAFE_OFFSET(0)] AS FLOAT64) AS row_spacing,
  SAFE_CAST(PixelSpacing[SAFE_OFFSET(1)] AS FLOAT64) AS column_spacing,
  SAFE_CAST(`Rows` AS INT64) AS n_rows,
  SAFE_CAST(`Columns` AS INT64) AS n_columns,
  crdc_series_uuid,
  crdc_instance_uuid,
  gcs_url,
  SAFE_CAST(instance_size AS INT64) AS instance_size
FROM `{{.Project}}.{{.Release}}.dicom_all`
WHERE collection_id = @collection_id
  AND SeriesInstanceUID IN UNNEST(@series_uids)
  AND Modality = 'CT'
ORDER BY series_instance_uid, sop_instance_uid
