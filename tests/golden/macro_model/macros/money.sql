{# Cents (an integer column) as a DOUBLE amount. #}
{% macro cents_to_units(column) -%}
CAST({{ column }} AS DOUBLE) / 100
{%- endmacro %}

{# A sum over the trailing `n_days` up to and including the current row, per partition. #}
{% macro trailing_sum(value, partition_by, order_by, n_days) -%}
sum({{ value }}) OVER (
        PARTITION BY {{ partition_by }}
        ORDER BY {{ order_by }}
        RANGE BETWEEN INTERVAL {{ n_days }} DAY PRECEDING AND CURRENT ROW
    )
{%- endmacro %}
