SELECT user_id, item_id, ts, clicked
FROM (VALUES
    ('u1', 'i1', TIMESTAMP '2024-01-02 00:00:00', TRUE),
    ('u1', 'i2', TIMESTAMP '2024-01-04 00:00:00', FALSE),
    ('u2', 'i1', TIMESTAMP '2024-01-01 00:00:00', FALSE),
    ('u1', 'i1', TIMESTAMP '2024-01-03 00:00:00', TRUE)
) AS t(user_id, item_id, ts, clicked)
