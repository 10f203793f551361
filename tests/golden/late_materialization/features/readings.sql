SELECT customer_id, reading_ts, reading * 10 AS reading_x10
FROM {{ source('raw', 'readings') }}
WHERE reading >= 0
