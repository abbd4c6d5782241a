{#- A day's CRS grade, written once for every contract query that reads grades (included as a
    CTE named `daily`): the highest grade assessed that day, so that several assessments of
    one day give one grade, the worst (the target's definition: prcrs_batch.task.target). -#}
daily AS (
    SELECT patient_id,
           assessed_on,
           MAX(grade) AS grade
    FROM crs_assessments
    WHERE patient_id IS NOT NULL
    GROUP BY patient_id, assessed_on
)
