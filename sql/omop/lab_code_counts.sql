-- OMOP CDM v5.4, for `prcrs-batch check`: how many measurement rows each lab code of
-- omop_loinc.csv matches (concept_code, n_rows, n_by_source: of them, matched through
-- measurement_source_concept_id because measurement_concept_id is 0), measured on or after
-- `since` (PRCRS_ACTIVE_DAYS before today). A code without rows is not in the result.
WITH {% include "shared/lab_measurements.sql" %}
SELECT concept_code, COUNT(*) AS n_rows, SUM(by_source) AS n_by_source
FROM lab_measurements
WHERE measurement_date >= :first_infusion
GROUP BY concept_code
