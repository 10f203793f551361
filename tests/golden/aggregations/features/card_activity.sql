SELECT card, paid_at, amount, merchant FROM {{ ref('payments') }}
