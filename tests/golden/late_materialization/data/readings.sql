SELECT customer_id, reading_ts, CAST(reading AS DOUBLE) AS reading FROM (VALUES
    (1, TIMESTAMP '2024-01-01 12:00:00', 1.5),
    (1, TIMESTAMP '2024-01-04 00:00:00', 2.0),
    (1, TIMESTAMP '2024-01-04 12:00:00', -1.0),
    (2, TIMESTAMP '2024-01-01 00:00:00', 3.0)
) AS t(customer_id, reading_ts, reading)
