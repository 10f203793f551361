-- Naive timestamps: they mean UTC.
SELECT key, event_ts, value
FROM (VALUES
    ('k1', TIMESTAMP '2024-01-01 08:00:00', 1),
    ('k1', TIMESTAMP '2024-01-01 09:00:00', 2)
) AS t(key, event_ts, value)
