-- OMOP CDM v5.4, for `prcrs-batch check`: how many measurement rows each lab code of
-- omop_loinc.csv matches (concept_code, n_rows), measured on or after `since`
-- (PRCRS_ACTIVE_DAYS before today). A code without rows is not in the result.
SELECT c.concept_code, COUNT(*) AS n_rows
FROM measurement AS m
JOIN concept AS c ON c.concept_id = m.measurement_concept_id
WHERE (c.vocabulary_id, c.concept_code) IN :lab_codes
  AND m.measurement_date >= :first_infusion
GROUP BY c.concept_code
