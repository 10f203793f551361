-- Card transactions: the spine of an event-level training set; is_fraud is known at txn_ts.
SELECT card_id, txn_ts, amount, is_fraud
FROM (VALUES
    (1, TIMESTAMP '2024-01-02 09:00:00', 30.0, false),
    (1, TIMESTAMP '2024-01-02 09:00:00.000001', 40.0, false),
    (1, TIMESTAMP '2024-01-05 12:00:00', 99.0, true),
    (2, TIMESTAMP '2024-01-03 08:00:00', 5.0, false),
    (2, TIMESTAMP '2024-01-05 08:00:00', 6.0, false),
    (3, TIMESTAMP '2024-01-04 00:00:00', 7.0, false)
) AS t(card_id, txn_ts, amount, is_fraud)
