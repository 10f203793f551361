-- Click events. The row without a timestamp must never be used.
SELECT user_id, event_ts, clicks, page
FROM (VALUES
    ('u1', TIMESTAMP '2024-01-01 00:00:00', 1, 'a'),
    ('u1', TIMESTAMP '2024-01-02 00:00:00', 2, 'b'),
    ('u1', TIMESTAMP '2024-01-03 00:00:00', NULL, 'c'),
    ('u2', TIMESTAMP '2024-01-02 12:00:00', 5, 'x'),
    ('u2', NULL, 9, 'z')
) AS t(user_id, event_ts, clicks, page)
