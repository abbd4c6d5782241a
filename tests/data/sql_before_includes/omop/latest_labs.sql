-- OMOP CDM v5.4: the lab results a night chooses from, as sql/latest_labs.sql (patient_id,
-- collected_at, analyte, value, unit): every measurement of each active patient (infusions as
-- in active_cohort.sql) collected in [window_start, window_end), and those dated after `now`.
--   analyte      the concept_code of one of omop_loinc.csv's (vocabulary_id, concept_code)
--                pairs (LOINC, or a site's own code); warehouse.py turns it into the analyte
--   collected_at measurement_datetime, else measurement_date
--   value        value_as_number, preceded by its operator (<, <=, >, >=: operator_concept_id's
--                concept name, domain 'Meas Value Operator'); value_source_value when there
--                is no number (a text result: labs.py records why it is not used)
--   unit         the unit concept's code (vocabulary 'UCUM'), else unit_source_value
-- OMOP has no result without a person, so the contract's second part has no counterpart.
WITH drug_concepts AS (
    SELECT c.concept_id FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :drug_codes
    UNION
    SELECT ca.descendant_concept_id FROM concept_ancestor AS ca
    JOIN concept AS c ON c.concept_id = ca.ancestor_concept_id
    WHERE (c.vocabulary_id, c.concept_code) IN :drug_codes
),
procedure_concepts AS (
    SELECT c.concept_id FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :procedure_codes
),
active AS (
    SELECT de.person_id
    FROM drug_exposure AS de
    WHERE de.drug_exposure_start_date >= :first_infusion
      AND de.drug_exposure_start_date <= :as_of
      AND (de.drug_concept_id IN (SELECT concept_id FROM drug_concepts)
           OR de.drug_source_concept_id IN (SELECT concept_id FROM drug_concepts))
    UNION
    SELECT po.person_id
    FROM procedure_occurrence AS po
    WHERE po.procedure_date >= :first_infusion
      AND po.procedure_date <= :as_of
      AND (po.procedure_concept_id IN (SELECT concept_id FROM procedure_concepts)
           OR po.procedure_source_concept_id IN (SELECT concept_id FROM procedure_concepts))
),
lab_concepts AS (
    SELECT c.concept_id, c.concept_code
    FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :lab_codes
),
labs AS (
    SELECT m.person_id,
           COALESCE(m.measurement_datetime, m.measurement_date) AS collected_at,
           lc.concept_code AS analyte,
           CASE WHEN m.value_as_number IS NULL THEN m.value_source_value
                ELSE COALESCE(op.concept_name, '') || CAST(m.value_as_number AS VARCHAR(60))
           END AS value,
           COALESCE(uc.concept_code, m.unit_source_value) AS unit
    FROM measurement AS m
    JOIN lab_concepts AS lc ON lc.concept_id = m.measurement_concept_id
    JOIN active AS a ON a.person_id = m.person_id
    LEFT JOIN concept AS op
      ON op.concept_id = m.operator_concept_id
     AND op.domain_id = 'Meas Value Operator'
     AND op.concept_name IN ('<', '<=', '>', '>=')
    LEFT JOIN concept AS uc
      ON uc.concept_id = m.unit_concept_id
     AND uc.vocabulary_id = 'UCUM'
)
SELECT CASE WHEN :patient_id_column = 'person_id' THEN CAST(p.person_id AS VARCHAR(50))
            ELSE p.person_source_value END AS patient_id,
       l.collected_at, l.analyte, l.value, l.unit
FROM labs AS l
JOIN person AS p ON p.person_id = l.person_id
WHERE (l.collected_at >= :window_start AND l.collected_at < :window_end)
   OR l.collected_at > :now
