SELECT
  "spine"."account_id",
  "spine"."day",
  "v0"."amount" AS "amount",
  "v0"."spend_window" AS "spend_window"
FROM days AS spine
ASOF LEFT JOIN (
  SELECT
    "account_id",
    "paid_at" AS "__fsql_ts",
    "amount",
    "spend_window"
  FROM account_spend
  WHERE
    NOT "paid_at" IS NULL
) AS v0
  ON "spine"."account_id" = "v0"."account_id" AND "spine"."day" >= "v0"."__fsql_ts"
ORDER BY
  "spine"."day",
  "spine"."account_id"
