SELECT sensor_id, ts
FROM (VALUES
    ('s1', TIMESTAMP '2024-01-03 00:00:00'),
    ('s1', TIMESTAMP '2024-01-03 00:00:01'),
    ('s1', TIMESTAMP '2024-01-10 12:00:00'),
    ('s1', TIMESTAMP '2024-01-12 00:00:00'),
    ('s1', TIMESTAMP '2023-12-31 00:00:00'),
    ('s2', TIMESTAMP '2024-01-05 00:00:00')
) AS t(sensor_id, ts)
