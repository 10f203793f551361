SELECT
    product_id,
    review_ts,
    {{ trailing('count(*)', 'product_id', 'review_ts', 90) }} AS reviews_90d,
    {{ trailing('avg(rating)', 'product_id', 'review_ts', 90) }} AS avg_rating_90d
FROM {{ source('shop', 'reviews') }}
