-- One label row per customer per month start within the order history (leaving room for the
-- label horizon); churned when the customer places no order in the next N days.
WITH bounds AS (
    SELECT
        date_trunc('month', min(order_ts)) AS first_month,
        max(order_ts) - {{ days(var('label_horizon_days')) }} AS last_label
    FROM {{ ref('orders_enriched') }}
),
-- the month starts after the first month of orders and before the last label time (every
-- month of the history has orders; portable SQL: no month intervals, so it builds on Spark too)
months AS (
    SELECT DISTINCT CAST(date_trunc('month', o.order_ts) AS TIMESTAMP) AS label_ts
    FROM {{ ref('orders_enriched') }} AS o, bounds AS b
    WHERE date_trunc('month', o.order_ts) > b.first_month
      AND date_trunc('month', o.order_ts) < b.last_label
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
