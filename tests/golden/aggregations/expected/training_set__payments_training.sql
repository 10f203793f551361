SELECT
  "spine"."card",
  "spine"."ts",
  COALESCE("v0"."n_1h", 0) AS "n_1h",
  "v0"."spend_2h" AS "spend_2h",
  "v0"."last_m_1h" AS "last_m_1h"
FROM spine AS spine
LEFT JOIN (
  SELECT
    "card",
    "__fsql_at",
    COALESCE(
      COUNT("__fsql_mark") OVER (
        PARTITION BY "card"
        ORDER BY "__fsql_at"
        RANGE BETWEEN (
          (
            (
              (
                "__fsql_at"
              ) % 1800000000 + 1800000000
            ) % 1800000000
          ) + 3600000000
        ) PRECEDING AND CURRENT ROW
      ),
      0
    ) AS "n_1h",
    CAST(SUM("amount") OVER (
      PARTITION BY "card"
      ORDER BY "__fsql_at"
      RANGE BETWEEN (
        (
          (
            (
              "__fsql_at"
            ) % 3600000000 + 3600000000
          ) % 3600000000
        ) + 7200000000
      ) PRECEDING AND CURRENT ROW
    ) AS DECIMAL(38, 1)) AS "spend_2h",
    CASE
      WHEN MAX(CASE WHEN NOT "merchant" IS NULL THEN "__fsql_at" END) OVER (
        PARTITION BY "card"
        ORDER BY "__fsql_at", "__fsql_point", "merchant" NULLS FIRST
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) >= "__fsql_at" - (
        (
          (
            (
              "__fsql_at"
            ) % 1800000000 + 1800000000
          ) % 1800000000
        ) + 3600000000
      )
      THEN LAST_VALUE("merchant" IGNORE NULLS) OVER (
        PARTITION BY "card"
        ORDER BY "__fsql_at", "__fsql_point", "merchant" NULLS FIRST
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      )
    END AS "last_m_1h"
  FROM (
    SELECT
      "card",
      EPOCH_US("paid_at") AS "__fsql_at",
      "amount",
      "merchant",
      1 AS "__fsql_mark",
      0 AS "__fsql_point"
    FROM card_activity
    WHERE
      NOT "paid_at" IS NULL AND NOT "card" IS NULL
    UNION ALL
    SELECT DISTINCT
      "card",
      EPOCH_US("ts") AS "__fsql_at",
      NULL,
      NULL,
      NULL AS "__fsql_mark",
      1 AS "__fsql_point"
    FROM spine
    WHERE
      NOT "card" IS NULL AND NOT "ts" IS NULL
  ) AS u
  QUALIFY
    "__fsql_point" <> 0
) AS v0
  ON "spine"."card" = "v0"."card" AND EPOCH_US("spine"."ts") = "v0"."__fsql_at"
ORDER BY
  "spine"."ts",
  "spine"."card"
