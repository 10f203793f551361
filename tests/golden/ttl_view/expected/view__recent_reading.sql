SELECT
  sensor_id,
  read_ts,
  CAST(reading AS DOUBLE) AS recent_value
FROM "readings"
