SELECT
  key,
  event_ts,
  tag
FROM (VALUES
  ('k1', CAST('2024-01-01 10:00:00+02' AS TIMESTAMPTZ), 'z1'),
  ('k1', CAST('2024-01-01 09:30:00+00' AS TIMESTAMPTZ), 'z2')) AS t(key, event_ts, tag)
