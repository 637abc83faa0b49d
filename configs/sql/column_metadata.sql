-- IDC's description of the clinical columns the cohort reads: confirms that each column
-- exists and which codes it may hold, before the clinical query runs.
-- Parameters: @table_suffix STRING (e.g. 'nlst_prsn'; IDC may prefix table_name),
--             @columns ARRAY<STRING>.
SELECT
  table_name,
  `column` AS column_name,
  column_label,
  TO_JSON_STRING(`values`) AS values_json
FROM `{{.Project}}.{{.Release}}_clinical.column_metadata`
WHERE ENDS_WITH(table_name, @table_suffix)
  AND `column` IN UNNEST(@columns)
ORDER BY column_name
