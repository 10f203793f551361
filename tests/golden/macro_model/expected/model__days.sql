/* One spine row per day at midnight, from range(). */
SELECT
  'a' AS account_id,
  CAST(d AS TIMESTAMP) AS day
FROM RANGE(CAST('2024-01-01' AS TIMESTAMP), CAST('2024-01-05' AS TIMESTAMP), INTERVAL '1' DAY) AS t(d)
