/* Zoned spine times, commented with the UTC instant each one is. */
SELECT
  key,
  ts
FROM (VALUES
  ('k1', CAST('2024-01-01 10:00:00+02' AS TIMESTAMPTZ)), /* 08:00Z */
  ('k1', CAST('2024-01-01 09:59:00+01' AS TIMESTAMPTZ)), /* 08:59Z */
  ('k1', CAST('2024-01-01 11:00:00+02' AS TIMESTAMPTZ)), /* 09:00Z */
  ('k1', CAST('2024-01-01 12:00:00+02' AS TIMESTAMPTZ)), /* 10:00Z */
  ('k1', CAST('2024-01-01 12:01:00+02' AS TIMESTAMPTZ)), /* 10:01Z */
  ('k1', CAST('2024-01-01 23:30:00-01' AS TIMESTAMPTZ)), /* 2024-01-02 00:30Z */
  ('k1', CAST('2024-01-01 07:59:59+00' AS TIMESTAMPTZ)) /* 07:59:59Z */) AS t(key, ts)
