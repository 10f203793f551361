SELECT
  card,
  paid_at,
  amount,
  merchant
FROM (VALUES
  ('c1', CAST('2024-01-01 10:00:00' AS TIMESTAMP), 1.0, 'm1'),
  ('c1', CAST('2024-01-01 10:30:00' AS TIMESTAMP), 2.0, 'm2'),
  ('c1', CAST('2024-01-01 11:00:00' AS TIMESTAMP), 4.0, NULL),
  ('c1', CAST('2024-01-01 11:59:59' AS TIMESTAMP), NULL, 'm3'),
  ('c2', CAST('2024-01-01 10:15:00' AS TIMESTAMP), 8.0, 'm9')) AS t(card, paid_at, amount, merchant)
