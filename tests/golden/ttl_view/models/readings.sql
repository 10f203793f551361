SELECT sensor_id, read_ts, reading
FROM (VALUES
    ('s1', TIMESTAMP '2024-01-01 00:00:00', 1.0),
    ('s1', TIMESTAMP '2024-01-10 00:00:00', 2.0),
    ('s2', TIMESTAMP '2024-01-01 00:00:00', 7.5)
) AS t(sensor_id, read_ts, reading)
