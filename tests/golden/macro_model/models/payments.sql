{{ config(materialized='table') }}
SELECT account_id, paid_at, {{ cents_to_units('cents') }} AS amount
FROM (VALUES
    ('a', TIMESTAMP '2024-01-01 12:00:00', 1000),
    ('a', TIMESTAMP '2024-01-02 12:00:00', 250),
    ('a', TIMESTAMP '2024-01-04 12:00:00', 100)
) AS t(account_id, paid_at, cents)
