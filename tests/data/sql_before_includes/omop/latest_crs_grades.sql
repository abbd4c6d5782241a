-- OMOP CDM v5.4: each active patient's most recent CRS grade on or before the as-of date, as
-- sql/latest_crs_grades.sql (patient_id, assessed_on, grade). A day's grade is the highest of
-- that day's grade events (omop_crs_grades.csv): condition_occurrence rows whose source concept
-- (or concept) is a graded code (ICD-10-CM D89.831-D89.835), and observation / measurement rows
-- of a site's ASTCT-grade concept whose value_as_number is the grade.
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
grade_events AS (
    SELECT co.person_id,
           co.condition_start_date AS assessed_on,
           CASE WHEN (c.vocabulary_id, c.concept_code) IN :grade_0_codes THEN 0
                WHEN (c.vocabulary_id, c.concept_code) IN :grade_1_codes THEN 1
                WHEN (c.vocabulary_id, c.concept_code) IN :grade_2_codes THEN 2
                WHEN (c.vocabulary_id, c.concept_code) IN :grade_3_codes THEN 3
                WHEN (c.vocabulary_id, c.concept_code) IN :grade_4_codes THEN 4
           END AS grade
    FROM condition_occurrence AS co
    JOIN concept AS c
      ON c.concept_id = co.condition_source_concept_id OR c.concept_id = co.condition_concept_id
    WHERE (c.vocabulary_id, c.concept_code) IN :grade_codes
    UNION ALL
    SELECT o.person_id, o.observation_date, o.value_as_number
    FROM observation AS o
    JOIN concept AS c ON c.concept_id = o.observation_concept_id
    WHERE (c.vocabulary_id, c.concept_code) IN :grade_value_codes
    UNION ALL
    SELECT m.person_id, m.measurement_date, m.value_as_number
    FROM measurement AS m
    JOIN concept AS c ON c.concept_id = m.measurement_concept_id
    WHERE (c.vocabulary_id, c.concept_code) IN :grade_value_codes
),
daily AS (
    SELECT person_id, assessed_on, MAX(grade) AS grade
    FROM grade_events
    GROUP BY person_id, assessed_on
)
,
ranked AS (
    SELECT d.person_id, d.assessed_on, d.grade,
           ROW_NUMBER() OVER (PARTITION BY d.person_id ORDER BY d.assessed_on DESC) AS recency
    FROM daily AS d
    JOIN (SELECT DISTINCT person_id FROM active) AS a ON a.person_id = d.person_id
    WHERE d.assessed_on <= :as_of
)
SELECT CASE WHEN :patient_id_column = 'person_id' THEN CAST(p.person_id AS VARCHAR(50))
            ELSE p.person_source_value END AS patient_id,
       r.assessed_on, r.grade
FROM ranked AS r
JOIN person AS p ON p.person_id = r.person_id
WHERE r.recency = 1
