SELECT
  item_id,
  event_ts,
  CAST(score AS DOUBLE) AS score,
  color
FROM "item_events"
