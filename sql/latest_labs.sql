-- The lab results a night chooses from, one set-based query for the whole cohort:
-- every result of each active patient collected in the lookback window
-- [window_start, window_end) (window_end: the end of the as-of day), those dated after
-- `now` (a clock running ahead; NULL: none) and those without a collection time; and the
-- window's results without a patient id. The database picks nothing: labs.py takes each
-- analyte's latest usable result and records why it set any newer one aside.
WITH {% include "shared/active_patients.sql" %}
SELECT l.patient_id, l.collected_at, l.analyte, l.value, l.unit
FROM lab_results AS l
JOIN active AS a ON a.patient_id = l.patient_id
WHERE (l.collected_at >= :window_start AND l.collected_at < :window_end)
   OR l.collected_at > :now
   OR l.collected_at IS NULL
UNION ALL
SELECT l.patient_id, l.collected_at, l.analyte, l.value, l.unit
FROM lab_results AS l
WHERE l.patient_id IS NULL
  AND ((l.collected_at >= :window_start AND l.collected_at < :window_end)
       OR l.collected_at > :now)
