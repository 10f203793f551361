SELECT
  user_id,
  event_ts,
  CAST(clicks AS BIGINT) AS clicks,
  page AS last_page
FROM "events"
