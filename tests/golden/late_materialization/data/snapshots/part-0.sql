SELECT * FROM (VALUES
    (1, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 01:00:00', 'a', 1),
    (1, TIMESTAMP '2024-01-05 00:00:00', NULL, 'b', 3),
    (2, TIMESTAMP '2024-01-02 00:00:00', NULL, 'x', 5)
) AS t(customer_id, snapshot_ts, ingested_at, segment, tier)
