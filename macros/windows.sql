{# A day-based interval literal: {{ days(30) }} -> INTERVAL 30 DAY #}
{% macro days(n) -%}
INTERVAL {{ n }} DAY
{%- endmacro %}

{# An aggregate over the trailing window of `n_days` ending at the current row (inclusive),
   per entity: {{ trailing('count(*)', 'customer_id', 'order_ts', 30) }} #}
{% macro trailing(aggregate, partition_by, order_by, n_days) -%}
{{ aggregate }} OVER (
        PARTITION BY {{ partition_by }}
        ORDER BY {{ order_by }}
        RANGE BETWEEN {{ days(n_days) }} PRECEDING AND CURRENT ROW
    )
{%- endmacro %}
