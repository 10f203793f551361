{# A day-based interval literal: {{ days(30) }} -> INTERVAL 30 DAY #}
{% macro days(n) -%}
INTERVAL {{ n }} DAY
{%- endmacro %}
