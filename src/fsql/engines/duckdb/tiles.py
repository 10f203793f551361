"""DuckDB's spelling of the online tile state (``windows.TileStrategy``): ``epoch_us``,
``list(value ORDER BY tile) FILTER (WHERE ...)`` and ``sum`` as it is."""

from __future__ import annotations

from sqlglot import exp

from fsql import windows


class ListTiles(windows.TileStrategy):
    """DuckDB's ordered ``list`` aggregate (null for no rows, null values kept)."""

    def micros(self, instant: exp.Expr) -> exp.Expr:
        return windows.micros(instant)

    def ordered_list(self, value: exp.Expr, order: exp.Expr, where: exp.Expr) -> exp.Expr:
        return exp.Filter(this=exp.func("list", exp.Order(
            this=value, expressions=[exp.Ordered(this=order)])), expression=exp.Where(this=where))

    def partial_sum(self, column: exp.Column, dtype: exp.DataType | None) -> exp.Expr:
        return exp.Sum(this=column)  # integers: HUGEINT (DECIMAL(38, 0) in Arrow)
