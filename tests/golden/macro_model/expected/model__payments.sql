SELECT
  account_id,
  paid_at,
  CAST(cents AS DOUBLE) / 100 AS amount
FROM (VALUES
  ('a', CAST('2024-01-01 12:00:00' AS TIMESTAMP), 1000),
  ('a', CAST('2024-01-02 12:00:00' AS TIMESTAMP), 250),
  ('a', CAST('2024-01-04 12:00:00' AS TIMESTAMP), 100)) AS t(account_id, paid_at, cents)
