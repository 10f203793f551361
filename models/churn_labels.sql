-- One label row per customer per month start; churned when no order in the next N days.
WITH months AS (
    SELECT CAST(m AS TIMESTAMP) AS label_ts
    FROM range(TIMESTAMP '2024-02-01', TIMESTAMP '2024-12-01', INTERVAL 1 MONTH) AS t(m)
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
