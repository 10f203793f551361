SELECT
  "spine"."key",
  "spine"."ts",
  "v0"."tag" AS "tag"
FROM naive_spine AS spine
ASOF LEFT JOIN (
  SELECT
    "key",
    "event_ts" AS "__fsql_ts",
    "tag"
  FROM zoned
  WHERE
    NOT "event_ts" IS NULL
) AS v0
  ON "spine"."key" = "v0"."key"
  AND CAST("spine"."ts" AS TIMESTAMPTZ) >= "v0"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."key"
