-- OMOP CDM v5.4: whether the feed is alive on the as-of night, as sql/feed_freshness.sql (one
-- row: newest_infusion, active_patients, newest_lab, newest_active_lab). Infusions:
-- shared/active_patients.sql's, every one up to the as-of date; lab results are
-- shared/lab_measurements.sql's, timed by measurement_datetime, else measurement_date.
-- Cheap with README's warehouse indexes (prcrs_batch/warehouse/indexes.py).
{% set every_infusion = true -%}
WITH {% include "shared/active_patients.sql" %},
{% include "shared/lab_measurements.sql" %},
labs AS (
    SELECT person_id, collected_at FROM lab_measurements
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
