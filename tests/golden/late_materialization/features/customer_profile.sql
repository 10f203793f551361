SELECT customer_id, snapshot_ts, ingested_at, segment, tier
FROM {{ source('raw', 'snapshots') }}
