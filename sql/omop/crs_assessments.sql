-- OMOP CDM v5.4: every day's CRS grade (shared/daily_grades.sql) of the patients infused from
-- first_infusion to last_infusion, as sql/crs_assessments.sql (patient_id, assessed_on,
-- grade): training labels, and the outcomes monitoring judges by.
{% set until = "last_infusion" -%}
WITH {% include "shared/active_patients.sql" %},
{% include "shared/daily_grades.sql" %}
SELECT {% include "shared/patient_id.sql" %} AS patient_id,
       d.assessed_on, d.grade
FROM daily AS d
JOIN person AS p ON p.person_id = d.person_id
WHERE d.person_id IN (SELECT person_id FROM active)
ORDER BY patient_id, d.assessed_on
