-- Every day's CRS grade (shared/daily_grades.sql) of the patients infused from
-- first_infusion to last_infusion: training labels, and the outcomes monitoring judges by.
{% set until = "last_infusion" -%}
WITH {% include "shared/active_patients.sql" %},
{% include "shared/daily_grades.sql" %}
SELECT d.patient_id, d.assessed_on, d.grade
FROM daily AS d
JOIN active AS a ON a.patient_id = d.patient_id
ORDER BY d.patient_id, d.assessed_on
