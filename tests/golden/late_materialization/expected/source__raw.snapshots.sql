SELECT
  *
FROM READ_PARQUET(
  '<project>/data/snapshots/*.parquet'
)
