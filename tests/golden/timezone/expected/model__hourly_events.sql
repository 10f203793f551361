/* Naive timestamps: they mean UTC. */
SELECT
  key,
  event_ts,
  value
FROM (VALUES
  ('k1', CAST('2024-01-01 08:00:00' AS TIMESTAMP), 1),
  ('k1', CAST('2024-01-01 09:00:00' AS TIMESTAMP), 2)) AS t(key, event_ts, value)
