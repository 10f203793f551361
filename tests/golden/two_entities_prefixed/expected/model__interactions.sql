SELECT
  user_id,
  item_id,
  ts,
  clicked
FROM (VALUES
  ('u1', 'i1', CAST('2024-01-02 00:00:00' AS TIMESTAMP), TRUE),
  ('u1', 'i2', CAST('2024-01-04 00:00:00' AS TIMESTAMP), FALSE),
  ('u2', 'i1', CAST('2024-01-01 00:00:00' AS TIMESTAMP), FALSE),
  ('u1', 'i1', CAST('2024-01-03 00:00:00' AS TIMESTAMP), TRUE)) AS t(user_id, item_id, ts, clicked)
