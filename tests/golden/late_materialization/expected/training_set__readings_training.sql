SELECT
  "spine"."customer_id",
  "spine"."as_of",
  CASE
    WHEN "f0"."__fsql_rowid" IS NULL AND NOT "v0"."__fsql_rowid" IS NULL
    THEN ERROR(
      'feature view ''customer_profile'': a row the point-in-time join chose was not there when its features were read; nothing was written'
    )
    ELSE "f0"."segment"
  END AS "segment",
  CASE
    WHEN "f0"."__fsql_rowid" IS NULL AND NOT "v0"."__fsql_rowid" IS NULL
    THEN ERROR(
      'feature view ''customer_profile'': a row the point-in-time join chose was not there when its features were read; nothing was written'
    )
    ELSE "f0"."tier"
  END AS "tier",
  CASE
    WHEN "f1"."__fsql_rowid" IS NULL
    AND NOT CASE
      WHEN "v1"."__fsql_ts" >= "spine"."as_of" - INTERVAL '172800' SECOND
      THEN "v1"."__fsql_rowid"
    END IS NULL
    THEN ERROR(
      'feature view ''readings'': a row the point-in-time join chose was not there when its features were read; nothing was written'
    )
    ELSE "f1"."reading_x10"
  END AS "reading_x10"
FROM spine AS spine
ASOF LEFT JOIN (
  SELECT
    "customer_id",
    {'t': "snapshot_ts", 'c': COALESCE("ingested_at", CAST('-infinity' AS TIMESTAMP))} AS "__fsql_key",
    "__fsql_rowid"
  FROM (
    SELECT
      customer_id,
      snapshot_ts,
      ingested_at,
      segment,
      tier,
      (
        CAST("raw__snapshots"."file_index" AS BIGINT) << 40
      ) | "raw__snapshots"."file_row_number" AS "__fsql_rowid"
    FROM READ_PARQUET(
      '<project>/data/snapshots/*.parquet'
    ) AS "raw__snapshots"
  )
  WHERE
    NOT "snapshot_ts" IS NULL
) AS v0
  ON "spine"."customer_id" = "v0"."customer_id"
  AND CASE
    WHEN NOT "spine"."as_of" IS NULL
    THEN {'t': "spine"."as_of", 'c': CAST('infinity' AS TIMESTAMP)}
  END >= "v0"."__fsql_key"
ASOF LEFT JOIN (
  SELECT
    "customer_id",
    "reading_ts" AS "__fsql_ts",
    "__fsql_rowid"
  FROM (
    SELECT
      customer_id,
      reading_ts,
      reading * 10 AS reading_x10,
      (
        CAST("raw__readings"."file_index" AS BIGINT) << 40
      ) | "raw__readings"."file_row_number" AS "__fsql_rowid"
    FROM READ_PARQUET(
      '<project>/data/readings.parquet'
    ) AS "raw__readings"
    WHERE
      reading >= 0
  )
  WHERE
    NOT "reading_ts" IS NULL
) AS v1
  ON "spine"."customer_id" = "v1"."customer_id"
  AND "spine"."as_of" >= "v1"."__fsql_ts"
LEFT JOIN (
  SELECT
    customer_id,
    snapshot_ts,
    ingested_at,
    segment,
    tier,
    (
      CAST("raw__snapshots"."file_index" AS BIGINT) << 40
    ) | "raw__snapshots"."file_row_number" AS "__fsql_rowid"
  FROM READ_PARQUET(
    '<project>/data/snapshots/*.parquet'
  ) AS "raw__snapshots"
) AS f0
  ON "f0"."__fsql_rowid" = "v0"."__fsql_rowid"
LEFT JOIN (
  SELECT
    customer_id,
    reading_ts,
    reading * 10 AS reading_x10,
    (
      CAST("raw__readings"."file_index" AS BIGINT) << 40
    ) | "raw__readings"."file_row_number" AS "__fsql_rowid"
  FROM READ_PARQUET(
    '<project>/data/readings.parquet'
  ) AS "raw__readings"
  WHERE
    reading >= 0
) AS f1
  ON "f1"."__fsql_rowid" = CASE
    WHEN "v1"."__fsql_ts" >= "spine"."as_of" - INTERVAL '172800' SECOND
    THEN "v1"."__fsql_rowid"
  END
ORDER BY
  "spine"."as_of",
  "spine"."customer_id"
