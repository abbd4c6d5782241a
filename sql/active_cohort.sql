-- Active CAR-T patients on the as-of date: each patient's latest infusion on or before
-- the as-of date and no earlier than first_infusion (as_of minus PRCRS_ACTIVE_DAYS).
WITH {% include "shared/active_patients.sql" %}
SELECT patient_id, infusion_date
FROM active
ORDER BY patient_id
