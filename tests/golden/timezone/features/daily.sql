SELECT key, day, value AS daily_value
FROM {{ ref('daily_events') }}
