-- Every 20th order becomes a positive example at 3 days before it; a shifted product a negative.
-- list_price: the price of the product being considered, which a request carries online.
WITH labels AS (
    SELECT
        customer_id,
        product_id,
        order_ts - INTERVAL 3 DAY AS label_ts,
        TRUE AS purchased
    FROM {{ ref('orders_enriched') }}
    WHERE order_id % 20 = 0
    UNION ALL
    SELECT
        customer_id,
        (product_id % 300) + 1 AS product_id,
        order_ts - INTERVAL 3 DAY AS label_ts,
        FALSE AS purchased
    FROM {{ ref('orders_enriched') }}
    WHERE order_id % 20 = 10
)
SELECT l.customer_id, l.product_id, l.label_ts, l.purchased, p.list_price
FROM labels AS l
JOIN {{ source('shop', 'products') }} AS p USING (product_id)
