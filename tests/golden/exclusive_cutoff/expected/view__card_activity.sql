SELECT
  card_id,
  ts,
  loaded_at,
  CAST(last_amount AS DOUBLE) AS last_amount,
  n_txn
FROM "activity"
