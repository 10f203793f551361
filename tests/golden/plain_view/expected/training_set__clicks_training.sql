SELECT
  "spine"."user_id",
  "spine"."ts",
  "spine"."label",
  "v0"."clicks" AS "clicks",
  "v0"."last_page" AS "last_page"
FROM spine AS spine
ASOF LEFT JOIN (
  SELECT
    "user_id",
    "event_ts" AS "__fsql_ts",
    "clicks",
    "last_page"
  FROM user_clicks
  WHERE
    NOT "event_ts" IS NULL
) AS v0
  ON "spine"."user_id" = "v0"."user_id" AND "spine"."ts" >= "v0"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."user_id",
  "spine"."label"
