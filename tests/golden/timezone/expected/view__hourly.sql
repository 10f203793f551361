SELECT
  key,
  event_ts,
  value AS hourly_value
FROM "hourly_events"
