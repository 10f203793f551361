SELECT key, event_ts, value AS hourly_value
FROM {{ ref('hourly_events') }}
