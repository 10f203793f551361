SELECT
  *
FROM READ_PARQUET(
  '<project>/data/readings.parquet'
)
