{#- The active CAR-T patients, written once for every contract query that needs them (included
    as a CTE named `active`): each patient's latest infusion from :first_infusion (the as-of
    date minus PRCRS_ACTIVE_DAYS) to the as-of date, or to :last_infusion where the including
    query sets `until = "last_infusion"` (training labels). -#}
active AS (
    SELECT patient_id,
           MAX(infusion_date) AS infusion_date
    FROM cart_infusions
    WHERE infusion_date >= :first_infusion
      AND infusion_date <= :{{ until | default("as_of") }}
      AND patient_id IS NOT NULL
    GROUP BY patient_id
)
