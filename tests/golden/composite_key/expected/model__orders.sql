SELECT
  customer_id,
  product_id,
  order_ts,
  qty
FROM (VALUES
  (1, 10, CAST('2024-01-01 00:00:00' AS TIMESTAMP), 1),
  (1, 11, CAST('2024-01-02 00:00:00' AS TIMESTAMP), 3),
  (1, 10, CAST('2024-01-03 00:00:00' AS TIMESTAMP), 2),
  (2, 10, CAST('2024-01-02 00:00:00' AS TIMESTAMP), 4)) AS t(customer_id, product_id, order_ts, qty)
