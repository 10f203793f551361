SELECT
  key,
  day,
  value AS daily_value
FROM "daily_events"
