SELECT * FROM (VALUES
    (1, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-03 00:00:00', 'a2', 2),
    (1, TIMESTAMP '2024-01-05 00:00:00', TIMESTAMP '2024-01-04 00:00:00', 'b_created', 4)
) AS t(customer_id, snapshot_ts, ingested_at, segment, tier)
