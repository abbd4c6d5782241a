-- OMOP CDM v5.4: whether the feed is alive on the as-of night, as sql/feed_freshness.sql (one
-- row: newest_infusion, active_patients, newest_lab, newest_active_lab). Infusions as in
-- active_cohort.sql; lab results are the measurements of omop_loinc.csv's codes, timed
-- by measurement_datetime, else measurement_date. Cheap with the indexes README recommends.
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
    WHERE de.drug_exposure_start_date <= :as_of
      AND (de.drug_concept_id IN (SELECT concept_id FROM drug_concepts)
           OR de.drug_source_concept_id IN (SELECT concept_id FROM drug_concepts))
    UNION ALL
    SELECT po.person_id, po.procedure_date
    FROM procedure_occurrence AS po
    WHERE po.procedure_date <= :as_of
      AND (po.procedure_concept_id IN (SELECT concept_id FROM procedure_concepts)
           OR po.procedure_source_concept_id IN (SELECT concept_id FROM procedure_concepts))
),
active AS (
    SELECT DISTINCT person_id FROM infusions WHERE infusion_date >= :first_infusion
),
lab_concepts AS (
    SELECT c.concept_id, c.concept_code
    FROM concept AS c
    WHERE (c.vocabulary_id, c.concept_code) IN :lab_codes
),
labs AS (
    SELECT m.person_id, COALESCE(m.measurement_datetime, m.measurement_date) AS collected_at
    FROM measurement AS m
    JOIN lab_concepts AS lc ON lc.concept_id = m.measurement_concept_id
)
SELECT
    (SELECT MAX(infusion_date) FROM infusions) AS newest_infusion,
    (SELECT COUNT(*) FROM active) AS active_patients,
    (SELECT MAX(collected_at) FROM labs WHERE collected_at < :window_end) AS newest_lab,
    (SELECT MAX(l.collected_at)
     FROM labs AS l
     JOIN active AS a ON a.person_id = l.person_id
     WHERE l.collected_at >= :fresh_since
       AND l.collected_at < :window_end) AS newest_active_lab
