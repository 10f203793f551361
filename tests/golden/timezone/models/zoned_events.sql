SELECT key, event_ts, tag
FROM (VALUES
    ('k1', TIMESTAMPTZ '2024-01-01 10:00:00+02', 'z1'),
    ('k1', TIMESTAMPTZ '2024-01-01 09:30:00+00', 'z2')
) AS t(key, event_ts, tag)
