{{ config(materialized='table') }}
SELECT
    o.order_id,
    o.customer_id,
    o.product_id,
    o.order_ts,
    o.quantity,
    o.amount,
    p.category
FROM {{ source('shop', 'orders') }} AS o
JOIN {{ source('shop', 'products') }} AS p USING (product_id)
