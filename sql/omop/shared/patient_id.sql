{#- OMOP CDM v5.4: the patient id a night shows for person `p`, written once: person_source_value,
    or person_id with PRCRS_OMOP_PATIENT_ID=person_id. -#}
CASE WHEN :patient_id_column = 'person_id' THEN CAST(p.person_id AS VARCHAR(50))
     ELSE p.person_source_value END
