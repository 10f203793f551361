SELECT
  key,
  day,
  value
FROM (VALUES
  ('k1', CAST('2024-01-01' AS DATE), 100),
  ('k1', CAST('2024-01-02' AS DATE), 200)) AS t(key, day, value)
