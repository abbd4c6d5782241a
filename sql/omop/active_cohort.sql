-- OMOP CDM v5.4: active CAR-T patients on the as-of date, as sql/active_cohort.sql (patient_id,
-- infusion_date): each person's latest CAR-T infusion in [first_infusion, as_of]
-- (shared/active_patients.sql). patient_id: shared/patient_id.sql.
WITH {% include "shared/active_patients.sql" %},
patients AS (
    SELECT {% include "shared/patient_id.sql" %} AS patient_id,
           a.infusion_date
    FROM active AS a
    JOIN person AS p ON p.person_id = a.person_id
)
SELECT patient_id,
       MAX(infusion_date) AS infusion_date
FROM patients
WHERE patient_id IS NOT NULL
GROUP BY patient_id
ORDER BY patient_id
