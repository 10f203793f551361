SELECT
  "spine"."sensor_id",
  "spine"."ts",
  CASE
    WHEN "v0"."__fsql_ts" >= "spine"."ts" - INTERVAL '172800' SECOND
    THEN "v0"."recent_value"
  END AS "recent_value",
  "v1"."any_value" AS "any_value"
FROM spine AS spine
ASOF LEFT JOIN (
  SELECT
    "sensor_id",
    "read_ts" AS "__fsql_ts",
    "recent_value"
  FROM recent_reading
  WHERE
    NOT "read_ts" IS NULL
) AS v0
  ON "spine"."sensor_id" = "v0"."sensor_id" AND "spine"."ts" >= "v0"."__fsql_ts"
ASOF LEFT JOIN (
  SELECT
    "sensor_id",
    "read_ts" AS "__fsql_ts",
    "any_value"
  FROM any_reading
  WHERE
    NOT "read_ts" IS NULL
) AS v1
  ON "spine"."sensor_id" = "v1"."sensor_id" AND "spine"."ts" >= "v1"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."sensor_id"
