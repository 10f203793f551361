SELECT card_id, opened_at, country, credit_limit
FROM {{ source('raw', 'cards') }}
