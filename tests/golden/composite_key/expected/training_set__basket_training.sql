SELECT
  "spine"."customer_id",
  "spine"."product_id",
  "spine"."ts",
  "v0"."times_bought" AS "times_bought",
  "v0"."last_qty" AS "last_qty"
FROM spine AS spine
ASOF LEFT JOIN (
  SELECT
    "customer_id",
    "product_id",
    "order_ts" AS "__fsql_ts",
    "times_bought",
    "last_qty"
  FROM customer_product
  WHERE
    NOT "order_ts" IS NULL
) AS v0
  ON "spine"."customer_id" = "v0"."customer_id"
  AND "spine"."product_id" = "v0"."product_id"
  AND "spine"."ts" >= "v0"."__fsql_ts"
ORDER BY
  "spine"."ts",
  "spine"."customer_id",
  "spine"."product_id"
