SELECT user_id, event_ts, score
FROM (VALUES
    ('u1', TIMESTAMP '2024-01-01 00:00:00', 0.5),
    ('u1', TIMESTAMP '2024-01-03 00:00:00', 0.75)
) AS t(user_id, event_ts, score)
