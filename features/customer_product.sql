SELECT
    customer_id,
    product_id,
    order_ts,
    CAST(count(*) OVER (
        PARTITION BY customer_id, product_id ORDER BY order_ts
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS BIGINT) AS times_bought,
    quantity AS last_quantity
FROM {{ ref('orders_enriched') }}
