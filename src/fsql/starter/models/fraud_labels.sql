-- The training spine: what to predict (is_fraud) and when (the transaction's time).
SELECT
    transaction_id,
    card_id,
    ts AS label_ts,
    is_fraud
FROM {{ source('raw', 'transactions') }}
