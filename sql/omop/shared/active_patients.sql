{#- OMOP CDM v5.4: the active CAR-T patients, written once for every OMOP query that needs them
    (included as CTEs; the last is `active`: person_id, infusion_date, each person's latest
    infusion from :first_infusion to the as-of date, or to :last_infusion where the including
    query sets `until = "last_infusion"`). An infusion is a drug_exposure or
    procedure_occurrence whose concept (or source concept) is one of the (vocabulary_id,
    concept_code) pairs of omop_infusions.csv, looked up in the site's own concept table; a
    drug also matches through concept_ancestor (an RxNorm ingredient listed: its drugs).
    `infusions` (person_id, infusion_date, source_table) holds every infusion up to that date from :first_infusion on, or from any date
    where the including query sets `every_infusion = true` (the feed's newest infusion). -#}
{%- set until = until | default("as_of") -%}
drug_concepts AS (
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
    SELECT de.person_id, de.drug_exposure_start_date AS infusion_date,
           'drug_exposure' AS source_table
    FROM drug_exposure AS de
    WHERE de.drug_exposure_start_date <= :{{ until }}
      {%- if not every_infusion | default(false) %}
      AND de.drug_exposure_start_date >= :first_infusion
      {%- endif %}
      AND (de.drug_concept_id IN (SELECT concept_id FROM drug_concepts)
           OR de.drug_source_concept_id IN (SELECT concept_id FROM drug_concepts))
    UNION ALL
    SELECT po.person_id, po.procedure_date, 'procedure_occurrence'
    FROM procedure_occurrence AS po
    WHERE po.procedure_date <= :{{ until }}
      {%- if not every_infusion | default(false) %}
      AND po.procedure_date >= :first_infusion
      {%- endif %}
      AND (po.procedure_concept_id IN (SELECT concept_id FROM procedure_concepts)
           OR po.procedure_source_concept_id IN (SELECT concept_id FROM procedure_concepts))
),
active AS (
    SELECT person_id, MAX(infusion_date) AS infusion_date
    FROM infusions
    WHERE infusion_date >= :first_infusion
    GROUP BY person_id
)
