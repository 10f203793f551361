SELECT customer_id, order_ts, amount, category
FROM {{ ref('orders_enriched') }}
