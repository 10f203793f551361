SELECT
  user_id,
  event_ts,
  CAST(score AS DOUBLE) AS score
FROM "user_events"
