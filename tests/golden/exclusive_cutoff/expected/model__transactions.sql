/* Card transactions: the spine of an event-level training set; is_fraud is known at txn_ts. */
SELECT
  card_id,
  txn_ts,
  amount,
  is_fraud
FROM (VALUES
  (1, CAST('2024-01-02 09:00:00' AS TIMESTAMP), 30.0, FALSE),
  (1, CAST('2024-01-02 09:00:00.000001' AS TIMESTAMP), 40.0, FALSE),
  (1, CAST('2024-01-05 12:00:00' AS TIMESTAMP), 99.0, TRUE),
  (2, CAST('2024-01-03 08:00:00' AS TIMESTAMP), 5.0, FALSE),
  (2, CAST('2024-01-05 08:00:00' AS TIMESTAMP), 6.0, FALSE),
  (3, CAST('2024-01-04 00:00:00' AS TIMESTAMP), 7.0, FALSE)) AS t(card_id, txn_ts, amount, is_fraud)
