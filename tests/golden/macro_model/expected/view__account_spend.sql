SELECT
  account_id,
  paid_at,
  amount,
  SUM(amount) OVER (
    PARTITION BY account_id
    ORDER BY paid_at
    RANGE BETWEEN INTERVAL '2' DAY PRECEDING AND CURRENT ROW
  ) AS spend_window
FROM "payments"
