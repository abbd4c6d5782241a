{#- OMOP CDM v5.4: the measurements of the lab codes of omop_loinc.csv, written once for every
    OMOP query that reads lab results (included as CTEs; the last is `lab_measurements`:
    person_id, collected_at, concept_code, the value and unit columns, by_source). A row's
    code is its measurement_concept_id's; where an ETL left that 0 (no standard concept),
    its measurement_source_concept_id's, and `by_source` says so (`check` counts them). -#}
lab_concepts AS (
    SELECT c.concept_id, c.concept_code
    FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :lab_codes
),
lab_measurements AS (
    SELECT m.person_id,
           COALESCE(m.measurement_datetime, m.measurement_date) AS collected_at,
           m.measurement_date,
           lc.concept_code,
           m.value_as_number,
           m.value_as_concept_id,
           m.value_source_value,
           m.operator_concept_id,
           m.unit_concept_id,
           m.unit_source_value,
           0 AS by_source
    FROM measurement AS m
    JOIN lab_concepts AS lc ON lc.concept_id = m.measurement_concept_id
    UNION ALL
    SELECT m.person_id,
           COALESCE(m.measurement_datetime, m.measurement_date),
           m.measurement_date,
           lc.concept_code,
           m.value_as_number,
           m.value_as_concept_id,
           m.value_source_value,
           m.operator_concept_id,
           m.unit_concept_id,
           m.unit_source_value,
           1
    FROM measurement AS m
    JOIN lab_concepts AS lc ON lc.concept_id = m.measurement_source_concept_id
    WHERE m.measurement_concept_id = 0
)
