-- Each active patient's most recent CRS grade (a day's grade: shared/daily_grades.sql)
-- assessed on or before the as-of date.
WITH {% include "shared/active_patients.sql" %},
{% include "shared/daily_grades.sql" %},
ranked AS (
    SELECT d.patient_id,
           d.assessed_on,
           d.grade,
           ROW_NUMBER() OVER (PARTITION BY d.patient_id ORDER BY d.assessed_on DESC) AS recency
    FROM daily AS d
    JOIN active AS a ON a.patient_id = d.patient_id
    WHERE d.assessed_on <= :as_of
)
SELECT patient_id, assessed_on, grade
FROM ranked
WHERE recency = 1
