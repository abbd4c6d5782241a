{#- OMOP CDM v5.4: a day's CRS grade, written once for every OMOP query that reads grades
    (included as CTEs; the last is `daily`: person_id, assessed_on, grade). A day's grade is
    the highest of that day's grade events (omop_crs_grades.csv), as in the contract's
    shared/daily_grades.sql: condition_occurrence rows whose source concept (or concept) is a
    graded code (ICD-10-CM D89.831-D89.835), and observation / measurement rows of a site's
    ASTCT-grade concept whose value_as_number is the grade. -#}
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
