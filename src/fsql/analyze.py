"""Parse rendered SQL with sqlglot and check declarations against the columns it produces."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from fsql.definitions import Entity, Feature, FeatureView
from fsql.dtypes import TIME_TYPES, declared_name
from fsql.engines.base import Column
from fsql.errors import DefinitionError, did_you_mean


def _snippet(sql: str, line: int) -> str:
    lines = sql.splitlines()
    lo, hi = max(line - 2, 1), min(line + 1, len(lines))
    return "\n".join(f"  {n:>4} | {lines[n - 1]}" for n in range(lo, hi + 1))


def parse_query(sql: str, path: str, dialect: str, template: str | None = None) -> exp.Query:
    """Parse one SELECT-like statement; syntax errors name the file and (rendered) line."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as err:
        info = err.errors[0] if err.errors else {}
        line = info.get("line")
        same_lines = template is not None and template.count("\n") == sql.count("\n")
        where = "" if same_lines or line is None else f" (line {line} of the rendered SQL)"
        context = f"\n{_snippet(sql, line)}" if line else ""
        raise DefinitionError(
            path, f"SQL syntax error{where}: {info.get('description', err)}{context}",
            line=line if same_lines else None,
            hint=f"fsql parses SQL in the {dialect} dialect; see target/<target>/compiled for the "
            "rendered text.",
        ) from None
    except TokenError as err:
        raise DefinitionError(path, f"SQL syntax error: {err}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        found = "nothing" if not statements else (
            f"{len(statements)} statements" if len(statements) > 1
            else f"a {statements[0].key.upper()} statement")
        raise DefinitionError(path, f"expected exactly one SELECT query, found {found}",
                              hint="a model or feature view is a single SELECT (CTEs allowed).")
    return statements[0]


def check_view(view: FeatureView, entities: dict[str, Entity],
               columns: list[Column], dialect: str) -> list[DefinitionError]:
    """Every declared key, timestamp and feature must be produced, with the declared type."""
    produced = {c.name: c.dtype for c in columns}
    errors: list[DefinitionError] = []
    sql = view.sql_path
    listing = ", ".join(produced)

    def missing(what: str, name: str, line: int, fix: str) -> None:
        errors.append(DefinitionError(
            view.path, f"{what} '{name}' is declared but {sql} does not select it "
            f"(it selects: {listing})", line=line, hint=fix))

    for entity_name in view.entities:
        entity = entities.get(entity_name)
        if entity is None:
            known = ", ".join(sorted(entities)) or "none"
            errors.append(DefinitionError(
                view.path, f"feature view '{view.name}' uses unknown entity '{entity_name}'",
                line=view.line, hint=f"{did_you_mean(entity_name, entities)}declare it "
                f"under entities: (known: {known})."))
            continue
        for key in entity.join_keys:
            if key not in produced:
                missing(f"join key of entity '{entity_name}'", key, view.line,
                        f"select a column named '{key}' in {sql}.")
    for label, column in (("timestamp", view.timestamp),
                          ("created_timestamp", view.created_timestamp)):
        if column is None:
            continue
        if column not in produced:
            missing(label, column, view.line, f"select '{column}' in {sql} or fix '{label}:'.")
        elif produced[column].this not in TIME_TYPES:
            errors.append(DefinitionError(
                view.path, f"{label} column '{column}' has type {produced[column].sql(dialect)} "
                f"in {sql}; it must be a timestamp or date", line=view.line,
                hint=f"cast it: CAST({column} AS TIMESTAMP)."))
    own_columns = {view.timestamp, view.created_timestamp} | {
        key for name in view.entities if name in entities for key in entities[name].join_keys}
    for feature in view.aggregations:
        errors += _check_aggregation(view, feature, produced, own_columns, dialect)
    for feature in view.features:
        if feature.aggregation is not None:
            continue
        actual = produced.get(feature.name)
        if feature.name in own_columns:
            errors.append(DefinitionError(
                view.path, f"feature '{feature.name}' is also a join key or timestamp column of "
                f"view '{view.name}'", line=feature.line,
                hint="a feature is a separate column: select it under another name."))
        elif actual is None:
            missing("feature", feature.name, feature.line,
                    f"add it to the SELECT of {sql} or remove it from the YAML.")
        elif not feature.dtype.matches(actual):
            alt = declared_name(actual)
            also = f", or declare type: {alt}" if alt else ""
            errors.append(DefinitionError(
                view.path, f"feature '{feature.name}' is declared {feature.dtype} but {sql} "
                f"produces {actual.sql(dialect)}", line=feature.line,
                hint=f"cast it in the SQL (CAST(... AS {feature.dtype.sql.sql(dialect)})){also}."))
    return errors


def _check_aggregation(view: FeatureView, feature: Feature, produced: dict[str, exp.DataType],
                       own_columns: set[str | None], dialect: str) -> list[DefinitionError]:
    """The aggregated column exists and is not a key or time; the declared type is what the
    function gives over it."""
    from fsql.windows import result_type

    agg = feature.aggregation
    assert agg is not None
    sql = view.sql_path
    if feature.name in produced or feature.name in own_columns:
        return [DefinitionError(
            view.path, f"aggregation '{feature.name}' has the name of a column of {sql}",
            line=feature.line, hint="name aggregations apart from the view's columns, "
            "e.g. spend_1h for sum(amount) over 1h.")]
    column_type = None
    if agg.column is not None:
        column_type = produced.get(agg.column)
        if column_type is None:
            return [DefinitionError(
                view.path, f"aggregation '{feature.name}' reads column '{agg.column}', which "
                f"{sql} does not select (it selects: {', '.join(produced)})",
                line=feature.line, hint=f"select '{agg.column}' in {sql} or fix 'column:'.")]
    expected = result_type(agg.function, column_type)
    if expected is None or declared_name(expected) is None:
        shown = column_type.sql(dialect) if column_type is not None else "?"
        return [DefinitionError(
            view.path, f"aggregation '{feature.name}': {agg.function} does not apply to "
            f"column '{agg.column}' of type {shown}", line=feature.line,
            hint="sum and avg need a number column; min, max and last need a column of an "
            "fsql type.")]
    if not feature.dtype.matches(expected):
        return [DefinitionError(
            view.path, f"aggregation '{feature.name}' is declared {feature.dtype} but "
            f"{agg.function}({agg.column or '*'}) gives {declared_name(expected)}",
            line=feature.line, hint=f"declare type: {declared_name(expected)}.")]
    return []
