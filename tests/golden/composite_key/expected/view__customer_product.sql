SELECT
  customer_id,
  product_id,
  order_ts,
  CAST(COUNT(*) OVER (
    PARTITION BY customer_id, product_id
    ORDER BY order_ts
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
  ) AS BIGINT) AS times_bought,
  qty AS last_qty
FROM "orders"
