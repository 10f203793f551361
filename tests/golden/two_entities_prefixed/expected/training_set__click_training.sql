SELECT
  "spine"."user_id",
  "spine"."item_id",
  "spine"."ts",
  "spine"."clicked",
  "v0"."user_stats__score" AS "user_stats__score",
  "v1"."item_stats__score" AS "item_stats__score"
FROM interactions AS spine
ASOF LEFT JOIN (
  SELECT
    "user_id",
    "event_ts" AS "__fsql_ts",
    "score" AS "user_stats__score"
  FROM user_stats
  WHERE
    NOT "event_ts" IS NULL
) AS v0
  ON "spine"."user_id" = "v0"."user_id" AND "spine"."ts" >= "v0"."__fsql_ts"
ASOF LEFT JOIN (
  SELECT
    "item_id",
    "event_ts" AS "__fsql_ts",
    "score" AS "item_stats__score"
  FROM item_stats
  WHERE
    NOT "event_ts" IS NULL
) AS v1
  ON "spine"."item_id" = "v1"."item_id" AND "spine"."ts" >= "v1"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."user_id",
  "spine"."item_id",
  "spine"."clicked"
