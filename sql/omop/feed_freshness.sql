-- OMOP CDM v5.4: whether the feed is alive on the as-of night, as sql/feed_freshness.sql (one
-- row: newest_infusion, active_patients, newest_lab, newest_active_lab). Infusions:
-- shared/active_patients.sql's, every one up to the as-of date; lab results are the
-- measurements of omop_loinc.csv's codes, timed by measurement_datetime, else
-- measurement_date. Cheap with the indexes README recommends.
{% set every_infusion = true -%}
WITH {% include "shared/active_patients.sql" %},
lab_concepts AS (
    SELECT c.concept_id, c.concept_code
    FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :lab_codes
),
labs AS (
    SELECT m.person_id, COALESCE(m.measurement_datetime, m.measurement_date) AS collected_at
    FROM measurement AS m
    JOIN lab_concepts AS lc ON lc.concept_id = m.measurement_concept_id
)
SELECT
    (SELECT MAX(infusion_date) FROM infusions) AS newest_infusion,
    (SELECT COUNT(*) FROM active) AS active_patients,
    (SELECT MAX(collected_at) FROM labs WHERE collected_at < :window_end) AS newest_lab,
    (SELECT MAX(l.collected_at)
     FROM labs AS l
     JOIN active AS a ON a.person_id = l.person_id
     WHERE l.collected_at >= :fresh_since
       AND l.collected_at < :window_end) AS newest_active_lab
