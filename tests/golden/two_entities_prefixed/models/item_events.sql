SELECT item_id, event_ts, score, color
FROM (VALUES
    ('i1', TIMESTAMP '2024-01-02 00:00:00', 10.0, 'red'),
    ('i2', TIMESTAMP '2024-01-01 00:00:00', 20.0, 'blue')
) AS t(item_id, event_ts, score, color)
