SELECT card, paid_at, amount, merchant
FROM (VALUES
    ('c1', TIMESTAMP '2024-01-01 10:00:00', 1.0, 'm1'),
    ('c1', TIMESTAMP '2024-01-01 10:30:00', 2.0, 'm2'),
    ('c1', TIMESTAMP '2024-01-01 11:00:00', 4.0, NULL),
    ('c1', TIMESTAMP '2024-01-01 11:59:59', NULL, 'm3'),
    ('c2', TIMESTAMP '2024-01-01 10:15:00', 8.0, 'm9')
) AS t(card, paid_at, amount, merchant)
