-- OMOP CDM v5.4: each active patient's most recent CRS grade on or before the as-of date, as
-- sql/latest_crs_grades.sql (patient_id, assessed_on, grade); a day's grade is
-- shared/daily_grades.sql's.
WITH {% include "shared/active_patients.sql" %},
{% include "shared/daily_grades.sql" %},
ranked AS (
    SELECT d.person_id, d.assessed_on, d.grade,
           ROW_NUMBER() OVER (PARTITION BY d.person_id ORDER BY d.assessed_on DESC) AS recency
    FROM daily AS d
    JOIN active AS a ON a.person_id = d.person_id
    WHERE d.assessed_on <= :as_of
)
SELECT {% include "shared/patient_id.sql" %} AS patient_id,
       r.assessed_on, r.grade
FROM ranked AS r
JOIN person AS p ON p.person_id = r.person_id
WHERE r.recency = 1
