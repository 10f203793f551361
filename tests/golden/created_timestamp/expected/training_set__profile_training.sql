SELECT
  "spine"."customer_id",
  "spine"."as_of",
  "v0"."segment" AS "segment",
  "v0"."tier" AS "tier"
FROM spine AS spine
ASOF LEFT JOIN (
  SELECT
    "customer_id",
    {'t': "snapshot_ts", 'c': COALESCE("ingested_at", CAST('-infinity' AS TIMESTAMP))} AS "__fsql_key",
    "segment",
    "tier"
  FROM customer_profile
  WHERE
    NOT "snapshot_ts" IS NULL
) AS v0
  ON "spine"."customer_id" = "v0"."customer_id"
  AND CASE
    WHEN NOT "spine"."as_of" IS NULL
    THEN {'t': "spine"."as_of", 'c': CAST('infinity' AS TIMESTAMP)}
  END >= "v0"."__fsql_key"
ORDER BY
  "spine"."as_of",
  "spine"."customer_id"
