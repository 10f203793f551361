SELECT
  key,
  event_ts,
  tag
FROM "zoned_events"
