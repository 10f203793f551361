SELECT key, day, value
FROM (VALUES
    ('k1', DATE '2024-01-01', 100),
    ('k1', DATE '2024-01-02', 200)
) AS t(key, day, value)
