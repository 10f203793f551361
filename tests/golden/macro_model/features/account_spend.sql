SELECT
    account_id,
    paid_at,
    amount,
    {{ trailing_sum('amount', 'account_id', 'paid_at', var('window_days')) }} AS spend_window
FROM {{ ref('payments') }}
