SELECT
  "spine"."key",
  "spine"."ts",
  CASE
    WHEN "v0"."__fsql_ts" >= "spine"."ts" - INTERVAL '3600' SECOND
    THEN "v0"."hourly_value"
  END AS "hourly_value",
  "v1"."daily_value" AS "daily_value"
FROM zoned_spine AS spine
ASOF LEFT JOIN (
  SELECT
    "key",
    CAST("event_ts" AS TIMESTAMPTZ) AS "__fsql_ts",
    "hourly_value"
  FROM hourly
  WHERE
    NOT "event_ts" IS NULL
) AS v0
  ON "spine"."key" = "v0"."key" AND "spine"."ts" >= "v0"."__fsql_ts"
ASOF LEFT JOIN (
  SELECT
    "key",
    CAST("day" AS TIMESTAMPTZ) AS "__fsql_ts",
    "daily_value"
  FROM daily
  WHERE
    NOT "day" IS NULL
) AS v1
  ON "spine"."key" = "v1"."key" AND "spine"."ts" >= "v1"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."key"
