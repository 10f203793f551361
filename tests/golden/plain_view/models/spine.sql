SELECT user_id, ts, label
FROM (VALUES
    ('u1', TIMESTAMP '2024-01-01 00:00:00', 1),
    ('u1', TIMESTAMP '2024-01-02 23:59:00', 2),
    ('u1', TIMESTAMP '2024-01-02 23:59:00', 2),
    ('u1', TIMESTAMP '2024-01-05 00:00:00', 3),
    ('u1', TIMESTAMP '2023-12-31 00:00:00', 4),
    ('u2', TIMESTAMP '2024-01-02 12:00:00', 5),
    ('u2', TIMESTAMP '2024-01-02 11:59:59', 6),
    ('u3', TIMESTAMP '2024-01-10 00:00:00', 7)
) AS t(user_id, ts, label)
