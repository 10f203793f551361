-- One label row per customer per month start within the order history (leaving room for the
-- label horizon); churned when the customer places no order in the next N days.
WITH bounds AS (
    SELECT
        date_trunc('month', min(order_ts)) + INTERVAL 1 MONTH AS first_month,
        max(order_ts) - {{ days(var('label_horizon_days')) }} AS last_label
    FROM {{ ref('orders_enriched') }}
),
months AS (
    SELECT CAST(m AS TIMESTAMP) AS label_ts
    FROM bounds, range(bounds.first_month, bounds.last_label, INTERVAL 1 MONTH) AS t(m)
)
SELECT
    c.customer_id,
    m.label_ts,
    NOT EXISTS (
        SELECT 1
        FROM {{ ref('orders_enriched') }} AS o
        WHERE o.customer_id = c.customer_id
          AND o.order_ts > m.label_ts
          AND o.order_ts <= m.label_ts + {{ days(var('label_horizon_days')) }}
    ) AS churned
FROM {{ source('shop', 'customers') }} AS c
CROSS JOIN months AS m
