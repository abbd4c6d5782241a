{#- OMOP CDM v5.4: a day's CRS grade, written once for every OMOP query that reads grades
    (included as CTEs; the last is `daily`: person_id, assessed_on, grade), by the contract's
    definition (shared/daily_grades.sql): the highest grade of the day.
    - A daily grade record comes first: observation / measurement rows of a site's ASTCT-grade
      concept (omop_crs_grades.csv, domain observation) whose value_as_number is the grade.
    - Conditions are the fallback, for persons without any daily record: condition_occurrence
      rows whose source concept (or concept) is a graded code (ICD-10-CM D89.831-D89.835)
      give their grade on their start date, and a condition that ends (condition_end_date)
      reads as resolved, grade 0, from the day after its end - unless a condition that day
      says otherwise. A condition without an end date keeps its grade until a later one.
    `day_after` is the one dialect-dependent expression (PostgreSQL date + 1, SQLite date()). -#}
{%- macro day_after(column) -%}
{%- if dialect == "sqlite" %}date({{ column }}, '+1 day'){% else %}({{ column }} + 1){% endif -%}
{%- endmacro -%}
daily_records AS (
    SELECT person_id, assessed_on, MAX(grade) AS grade
    FROM (
        SELECT o.person_id, o.observation_date AS assessed_on, o.value_as_number AS grade
        FROM observation AS o
        JOIN concept AS c ON c.concept_id = o.observation_concept_id
        WHERE (c.vocabulary_id, c.concept_code) IN :grade_value_codes
        UNION ALL
        SELECT m.person_id, m.measurement_date, m.value_as_number
        FROM measurement AS m
        JOIN concept AS c ON c.concept_id = m.measurement_concept_id
        WHERE (c.vocabulary_id, c.concept_code) IN :grade_value_codes
    ) AS records
    GROUP BY person_id, assessed_on
),
graded_conditions AS (
    SELECT co.person_id,
           co.condition_start_date,
           co.condition_end_date,
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
      AND co.person_id NOT IN (SELECT person_id FROM daily_records)
),
condition_days AS (
    SELECT person_id, assessed_on, MAX(grade) AS grade
    FROM (
        SELECT person_id, condition_start_date AS assessed_on, grade
        FROM graded_conditions
        UNION ALL
        SELECT person_id, {{ day_after("condition_end_date") }}, 0
        FROM graded_conditions
        WHERE condition_end_date IS NOT NULL
    ) AS events
    GROUP BY person_id, assessed_on
),
daily AS (
    SELECT person_id, assessed_on, grade FROM daily_records
    UNION ALL
    SELECT person_id, assessed_on, grade FROM condition_days
)
