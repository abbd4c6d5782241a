-- OMOP CDM v5.4: the lab results a night chooses from, as sql/latest_labs.sql (patient_id,
-- collected_at, analyte, value, unit): every measurement of each active patient
-- (shared/active_patients.sql) collected in [window_start, window_end), and those dated
-- after `now`.
--   analyte      the concept_code of one of omop_loinc.csv's (vocabulary_id, concept_code)
--                pairs (LOINC, or a site's own code), through measurement_concept_id or,
--                where that is 0, measurement_source_concept_id (shared/lab_measurements.sql);
--                queries.py turns it into the analyte
--   collected_at measurement_datetime, else measurement_date
--   value        value_as_number, preceded by its operator (<, <=, >, >=: operator_concept_id's
--                concept name, domain 'Meas Value Operator'); value_source_value when there
--                is no number (a text result: labs.py records why it is not used)
--   unit         the unit concept's code (vocabulary 'UCUM'), else unit_source_value
-- OMOP has no result without a person, so the contract's second part has no counterpart.
WITH {% include "shared/active_patients.sql" %},
{% include "shared/lab_measurements.sql" %},
labs AS (
    SELECT lm.person_id,
           lm.collected_at,
           lm.concept_code AS analyte,
           CASE WHEN lm.value_as_number IS NULL THEN lm.value_source_value
                ELSE COALESCE(op.concept_name, '') || CAST(lm.value_as_number AS VARCHAR(60))
           END AS value,
           COALESCE(uc.concept_code, lm.unit_source_value) AS unit
    FROM lab_measurements AS lm
    JOIN active AS a ON a.person_id = lm.person_id
    LEFT JOIN concept AS op
      ON op.concept_id = lm.operator_concept_id
     AND op.domain_id = 'Meas Value Operator'
     AND op.concept_name IN ('<', '<=', '>', '>=')
    LEFT JOIN concept AS uc
      ON uc.concept_id = lm.unit_concept_id
     AND uc.vocabulary_id = 'UCUM'
)
SELECT {% include "shared/patient_id.sql" %} AS patient_id,
       l.collected_at, l.analyte, l.value, l.unit
FROM labs AS l
JOIN person AS p ON p.person_id = l.person_id
WHERE (l.collected_at >= :window_start AND l.collected_at < :window_end)
   OR l.collected_at > :now
