-- Per-card activity rows, each stamped at the transaction it follows; a reload re-uses ts with a
-- later loaded_at.
SELECT card_id, ts, loaded_at, last_amount, n_txn
FROM (VALUES
    (1, TIMESTAMP '2024-01-01 10:00:00', TIMESTAMP '2024-01-01 10:00:00', 10.0, 1),
    (1, TIMESTAMP '2024-01-02 09:00:00', TIMESTAMP '2024-01-02 09:00:00', 25.0, 2),
    (1, TIMESTAMP '2024-01-02 09:00:00', TIMESTAMP '2024-01-02 09:30:00', 30.0, 2),
    (1, TIMESTAMP '2024-01-05 12:00:00', NULL, 99.0, 3),
    (2, TIMESTAMP '2024-01-03 08:00:00', NULL, 5.0, 1)
) AS t(card_id, ts, loaded_at, last_amount, n_txn)
