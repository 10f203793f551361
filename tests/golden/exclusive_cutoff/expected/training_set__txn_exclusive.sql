SELECT
  "spine"."card_id",
  "spine"."txn_ts",
  "spine"."amount",
  "spine"."is_fraud",
  CASE
    WHEN "v0"."__fsql_key".t >= "spine"."txn_ts" - INTERVAL '172800' SECOND
    THEN "v0"."last_amount"
  END AS "last_amount",
  CASE
    WHEN "v0"."__fsql_key".t >= "spine"."txn_ts" - INTERVAL '172800' SECOND
    THEN "v0"."n_txn"
  END AS "n_txn"
FROM transactions AS spine
ASOF LEFT JOIN (
  SELECT
    "card_id",
    {'t': "ts", 'c': COALESCE("loaded_at", CAST('-infinity' AS TIMESTAMP))} AS "__fsql_key",
    "last_amount",
    "n_txn"
  FROM card_activity
  WHERE
    NOT "ts" IS NULL
) AS v0
  ON "spine"."card_id" = "v0"."card_id"
  AND CASE
    WHEN NOT "spine"."txn_ts" IS NULL
    THEN {'t': "spine"."txn_ts", 'c': CAST('-infinity' AS TIMESTAMP)}
  END > "v0"."__fsql_key"
ORDER BY
  "spine"."txn_ts",
  "spine"."card_id",
  "spine"."amount",
  "spine"."is_fraud"
