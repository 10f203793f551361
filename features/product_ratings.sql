SELECT product_id, review_ts, rating
FROM {{ source('shop', 'reviews') }}
