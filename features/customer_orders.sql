SELECT
    customer_id,
    order_ts,
    {{ trailing('count(*)', 'customer_id', 'order_ts', 30) }} AS orders_30d,
    {{ trailing('sum(amount)', 'customer_id', 'order_ts', 30) }} AS spend_30d,
    {{ trailing('avg(amount)', 'customer_id', 'order_ts', 30) }} AS avg_amount_30d,
    category AS last_category
FROM {{ ref('orders_enriched') }}
