/* Profile snapshots; a correction re-uses snapshot_ts with a later ingested_at. */
SELECT
  customer_id,
  snapshot_ts,
  ingested_at,
  segment,
  tier
FROM (VALUES
  (
    1,
    CAST('2024-01-01 00:00:00' AS TIMESTAMP),
    CAST('2024-01-01 01:00:00' AS TIMESTAMP),
    'a',
    1
  ),
  (
    1,
    CAST('2024-01-01 00:00:00' AS TIMESTAMP),
    CAST('2024-01-03 00:00:00' AS TIMESTAMP),
    'a2',
    2
  ),
  (1, CAST('2024-01-05 00:00:00' AS TIMESTAMP), NULL, 'b', 3),
  (
    1,
    CAST('2024-01-05 00:00:00' AS TIMESTAMP),
    CAST('2024-01-04 00:00:00' AS TIMESTAMP),
    'b_created',
    4
  ),
  (2, CAST('2024-01-02 00:00:00' AS TIMESTAMP), NULL, 'x', 5)) AS t(customer_id, snapshot_ts, ingested_at, segment, tier)
