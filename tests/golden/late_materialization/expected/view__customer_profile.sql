SELECT
  customer_id,
  snapshot_ts,
  ingested_at,
  segment,
  tier
FROM "raw__snapshots"
