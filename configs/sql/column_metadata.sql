-- IDC's description of the clinical columns the cohort reads: confirms that each column
-- exists and which codes it may hold, before the clinical query runs.
-- IDC writes table_name as the full path (bigquery-public-data.idc_vNN_clinical.nlst_prsn);
-- the match takes that or a bare name, and not a longer name with the same ending
-- (nlst_ctab must not match a ...xnlst_ctab).
-- Parameters: @table_suffix STRING (e.g. 'nlst_prsn'),
--             @columns ARRAY<STRING>.
SELECT
  table_name,
  `column` AS column_name,
  column_label,
  TO_JSON_STRING(`values`) AS values_json
FROM `{{.Project}}.{{.Release}}_clinical.column_metadata`
WHERE (table_name = @table_suffix OR ENDS_WITH(table_name, CONCAT('.', @table_suffix)))
  AND `column` IN UNNEST(@columns)
ORDER BY column_name
