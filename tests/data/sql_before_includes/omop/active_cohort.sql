-- OMOP CDM v5.4: active CAR-T patients on the as-of date, as sql/active_cohort.sql (patient_id,
-- infusion_date): each person's latest CAR-T infusion in [first_infusion, as_of]. An infusion is
-- a drug_exposure or procedure_occurrence whose concept (or source concept) is one of the
-- (vocabulary_id, concept_code) pairs of omop_infusions.csv, looked up in the site's own concept
-- table; a drug also matches through concept_ancestor (an RxNorm ingredient listed: its drugs).
-- patient_id: person_source_value, or person_id with PRCRS_OMOP_PATIENT_ID=person_id.
WITH drug_concepts AS (
    SELECT c.concept_id FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :drug_codes
    UNION
    SELECT ca.descendant_concept_id FROM concept_ancestor AS ca
    JOIN concept AS c ON c.concept_id = ca.ancestor_concept_id
    WHERE (c.vocabulary_id, c.concept_code) IN :drug_codes
),
procedure_concepts AS (
    SELECT c.concept_id FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :procedure_codes
),
infusions AS (
    SELECT de.person_id, de.drug_exposure_start_date AS infusion_date
    FROM drug_exposure AS de
    WHERE de.drug_exposure_start_date >= :first_infusion
      AND de.drug_exposure_start_date <= :as_of
      AND (de.drug_concept_id IN (SELECT concept_id FROM drug_concepts)
           OR de.drug_source_concept_id IN (SELECT concept_id FROM drug_concepts))
    UNION ALL
    SELECT po.person_id, po.procedure_date
    FROM procedure_occurrence AS po
    WHERE po.procedure_date >= :first_infusion
      AND po.procedure_date <= :as_of
      AND (po.procedure_concept_id IN (SELECT concept_id FROM procedure_concepts)
           OR po.procedure_source_concept_id IN (SELECT concept_id FROM procedure_concepts))
),
patients AS (
    SELECT CASE WHEN :patient_id_column = 'person_id' THEN CAST(p.person_id AS VARCHAR(50))
                ELSE p.person_source_value END AS patient_id,
           i.infusion_date
    FROM infusions AS i
    JOIN person AS p ON p.person_id = i.person_id
)
SELECT patient_id,
       MAX(infusion_date) AS infusion_date
FROM patients
WHERE patient_id IS NOT NULL
GROUP BY patient_id
ORDER BY patient_id
