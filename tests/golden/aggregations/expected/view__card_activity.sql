SELECT
  card,
  paid_at,
  amount,
  merchant
FROM "payments"
