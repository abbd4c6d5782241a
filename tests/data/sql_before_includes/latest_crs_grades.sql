-- Each active patient's most recent CRS grade assessed on or before the as-of date.
WITH active AS (
    SELECT DISTINCT patient_id
    FROM cart_infusions
    WHERE infusion_date >= :first_infusion
      AND infusion_date <= :as_of
),
ranked AS (
    SELECT c.patient_id,
           c.assessed_on,
           c.grade,
           ROW_NUMBER() OVER (PARTITION BY c.patient_id ORDER BY c.assessed_on DESC) AS recency
    FROM crs_assessments AS c
    JOIN active AS a ON a.patient_id = c.patient_id
    WHERE c.assessed_on <= :as_of
)
SELECT patient_id, assessed_on, grade
FROM ranked
WHERE recency = 1
