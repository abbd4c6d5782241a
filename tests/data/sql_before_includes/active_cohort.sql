-- Active CAR-T patients on the as-of date: each patient's latest infusion on or before
-- the as-of date and no earlier than first_infusion (as_of minus PRCRS_ACTIVE_DAYS).
SELECT patient_id,
       MAX(infusion_date) AS infusion_date
FROM cart_infusions
WHERE infusion_date >= :first_infusion
  AND infusion_date <= :as_of
  AND patient_id IS NOT NULL
GROUP BY patient_id
ORDER BY patient_id
