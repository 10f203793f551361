-- One spine row per day at midnight, from range().
SELECT 'a' AS account_id, CAST(d AS TIMESTAMP) AS day
FROM range(TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-05', INTERVAL 1 DAY) AS t(d)
