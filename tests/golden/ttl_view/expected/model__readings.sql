SELECT
  sensor_id,
  read_ts,
  reading
FROM (VALUES
  ('s1', CAST('2024-01-01 00:00:00' AS TIMESTAMP), 1.0),
  ('s1', CAST('2024-01-10 00:00:00' AS TIMESTAMP), 2.0),
  ('s2', CAST('2024-01-01 00:00:00' AS TIMESTAMP), 7.5)) AS t(sensor_id, read_ts, reading)
