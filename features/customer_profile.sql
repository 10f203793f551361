SELECT
    s.customer_id,
    s.snapshot_ts,
    s.ingested_at,
    s.segment,
    s.credit_limit,
    c.country
FROM {{ source('shop', 'customer_snapshots') }} AS s
JOIN {{ source('shop', 'customers') }} AS c USING (customer_id)
