-- Each active patient's latest result per analyte collected in the lookback window
-- window [window_start, window_end), window_end being the end of the as-of day. One query
-- for the whole cohort. RANK keeps results that tie on time, so that labs.py can
-- resolve duplicates instead of the database picking one at random. Rows with a
-- NULL patient id cannot join and never reach the job.
WITH active AS (
    SELECT DISTINCT patient_id
    FROM cart_infusions
    WHERE infusion_date >= :first_infusion
      AND infusion_date <= :as_of
),
ranked AS (
    SELECT l.patient_id,
           l.collected_at,
           l.analyte,
           l.value,
           l.unit,
           RANK() OVER (
               PARTITION BY l.patient_id, l.analyte
               ORDER BY l.collected_at DESC
           ) AS recency
    FROM lab_results AS l
    JOIN active AS a ON a.patient_id = l.patient_id
    WHERE l.collected_at >= :window_start
      AND l.collected_at < :window_end
)
SELECT patient_id, collected_at, analyte, value, unit
FROM ranked
WHERE recency = 1
