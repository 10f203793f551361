SELECT user_id, event_ts, CAST(score AS DOUBLE) AS score
FROM {{ ref('user_events') }}
