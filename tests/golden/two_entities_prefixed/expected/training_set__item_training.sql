SELECT
  "spine"."user_id",
  "spine"."item_id",
  "spine"."ts",
  "spine"."clicked",
  "v0"."score" AS "score",
  "v0"."color" AS "color"
FROM interactions AS spine
ASOF LEFT JOIN (
  SELECT
    "item_id",
    "event_ts" AS "__fsql_ts",
    "score",
    "color"
  FROM item_stats
  WHERE
    NOT "event_ts" IS NULL
) AS v0
  ON "spine"."item_id" = "v0"."item_id" AND "spine"."ts" >= "v0"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."item_id",
  "spine"."user_id",
  "spine"."clicked"
