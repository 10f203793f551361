"""Spark's spelling of the online tile state (``windows.TileStrategy``), built so that the
Arrow a sync encodes means what DuckDB's does, value for value:

- an ordered list is ``transform(array_sort(collect_list(struct(tile AS k, value AS v))
  FILTER (WHERE ...)), x -> x.v)``: sorted by tile (unique per entity and group), and the
  struct is never null, so a null value stays in its place (``collect_list`` skips null
  elements, DuckDB's ``list`` keeps them). No rows gives ``[]`` where DuckDB gives null;
  ``online.tiles.encode_states`` stores both as no tiles;
- ``avg``'s partial sums take DuckDB's ``sum`` types: integers summed as DECIMAL(38, 0)
  (DuckDB's HUGEINT, which it hands to Arrow as DECIMAL(38, 0): stored as text), decimals as
  DECIMAL(38, s), floats as DOUBLE. Spark's own ``sum`` of a BIGINT is a BIGINT (stored as a
  number, and overflowing where DuckDB's does not);
- times in microseconds are ``unix_micros`` of the instant (``engines.spark.union.micros``).
"""

from __future__ import annotations

from sqlglot import exp

from fsql.dtypes import normalize
from fsql.engines.spark.union import micros
from fsql.windows import INTEGERS, TileStrategy

T = exp.DataType.Type


class CollectTiles(TileStrategy):
    """Spark's ``collect_list`` of (tile, value) structs, sorted."""

    def micros(self, instant: exp.Expr) -> exp.Expr:
        return micros(instant)

    def ordered_list(self, value: exp.Expr, order: exp.Expr, where: exp.Expr) -> exp.Expr:
        pair = exp.Struct(expressions=[
            exp.PropertyEQ(this=exp.to_identifier("k"), expression=order),
            exp.PropertyEQ(this=exp.to_identifier("v"), expression=value)])
        collected = exp.Filter(this=exp.func("collect_list", pair),
                               expression=exp.Where(this=where))
        element = exp.to_identifier("x")
        return exp.Transform(this=exp.ArraySort(this=collected), expression=exp.Lambda(
            this=exp.Dot(this=element.copy(), expression=exp.to_identifier("v")),
            expressions=[element]))

    def partial_sum(self, column: exp.Column, dtype: exp.DataType | None) -> exp.Expr:
        kind = normalize(dtype) if dtype is not None else None
        if kind is not None and kind.this in INTEGERS:
            return exp.Sum(this=exp.cast(column, exp.DataType.build("DECIMAL(38, 0)")))
        if kind is not None and kind.this == T.DECIMAL and len(kind.expressions) == 2:
            scale = kind.expressions[1].this.this
            return exp.Sum(this=exp.cast(column, exp.DataType.build(f"DECIMAL(38, {scale})")))
        return exp.Sum(this=column)
