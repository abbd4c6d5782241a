-- Every CRS assessment of patients infused from first_infusion to last_infusion:
-- training labels.
SELECT c.patient_id, c.assessed_on, c.grade
FROM crs_assessments AS c
WHERE c.patient_id IN (
    SELECT patient_id
    FROM cart_infusions
    WHERE infusion_date >= :first_infusion
      AND infusion_date <= :last_infusion
)
ORDER BY c.patient_id, c.assessed_on
