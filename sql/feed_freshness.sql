-- Whether the warehouse feed is alive on the as-of night (freshness.py), one row:
--   newest_infusion    the newest infusion on or before the as-of date (any patient)
--   active_patients    patients infused within PRCRS_ACTIVE_DAYS, as active_cohort.sql
--   newest_lab         the newest lab result before the data cut-off (any patient)
--   newest_active_lab  the newest lab result of an active patient collected in
--                      [fresh_since, window_end): NULL when none is that recent
-- Cheap with README's warehouse indexes (prcrs_batch/warehouse/indexes.py).
WITH {% include "shared/active_patients.sql" %}
SELECT
    (SELECT MAX(infusion_date) FROM cart_infusions WHERE infusion_date <= :as_of)
        AS newest_infusion,
    (SELECT COUNT(*) FROM active) AS active_patients,
    (SELECT MAX(collected_at) FROM lab_results WHERE collected_at < :window_end)
        AS newest_lab,
    (SELECT MAX(l.collected_at)
     FROM lab_results AS l
     JOIN active AS a ON a.patient_id = l.patient_id
     WHERE l.collected_at >= :fresh_since
       AND l.collected_at < :window_end) AS newest_active_lab
