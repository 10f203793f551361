SELECT sensor_id, read_ts, CAST(reading AS DOUBLE) AS any_value
FROM {{ ref('readings') }}
