-- OMOP CDM v5.4, for `prcrs-batch check`: what a site's mapping may silently miss, one row:
--   drug_infusions        CAR-T infusions found through drug_exposure (ever, to the as-of date)
--   procedure_infusions   ... through procedure_occurrence
--   persons_without_id    infused persons without the configured patient id
--                         (shared/patient_id.sql): their nights would carry none
--   concept_only_results  lab results (of omop_loinc.csv's codes, on or after
--                         PRCRS_ACTIVE_DAYS before) with no value_as_number but a
--                         value_as_concept_id: read as no number
{%- set every_infusion = true %}
WITH {% include "shared/active_patients.sql" %},
{% include "shared/lab_measurements.sql" %}
SELECT
    (SELECT COUNT(*) FROM infusions WHERE source_table = 'drug_exposure') AS drug_infusions,
    (SELECT COUNT(*) FROM infusions WHERE source_table = 'procedure_occurrence')
        AS procedure_infusions,
    (SELECT COUNT(DISTINCT p.person_id) FROM person AS p
     JOIN infusions AS i ON i.person_id = p.person_id
     WHERE ({% include "shared/patient_id.sql" %}) IS NULL) AS persons_without_id,
    (SELECT COUNT(*) FROM lab_measurements
     WHERE measurement_date >= :first_infusion
       AND value_as_number IS NULL AND value_as_concept_id IS NOT NULL
       AND value_as_concept_id <> 0) AS concept_only_results
