SELECT customer_id, product_id, ts
FROM (VALUES
    (1, 10, TIMESTAMP '2024-01-02 00:00:00'),
    (1, 11, TIMESTAMP '2024-01-02 00:00:00'),
    (1, 10, TIMESTAMP '2024-01-04 00:00:00'),
    (2, 11, TIMESTAMP '2024-01-05 00:00:00'),
    (2, 10, TIMESTAMP '2024-01-01 00:00:00'),
    (1, NULL, TIMESTAMP '2024-01-05 00:00:00')
) AS t(customer_id, product_id, ts)
