SELECT
    card_id,
    ts,
    amount,
    CAST(amount >= {{ var('large_amount') }} AS BIGINT) AS is_large
FROM {{ source('raw', 'transactions') }}
