SELECT key, event_ts, tag
FROM {{ ref('zoned_events') }}
