"""The trailing-window guard: an online view of latest rows must not serve a time window that
was evaluated at its rows.

A feature written as ``sum(amount) OVER (PARTITION BY card ORDER BY ts RANGE INTERVAL 1 HOUR
PRECEDING)`` is computed at each row of the view. Online, ``fsql sync`` stores each entity's
latest row, so at request time the value means "in the hour before the entity's last row" —
perhaps days ago — and it never decays, while a model trained on an event spine saw the hour
before its label time. Such a feature in an online view is refused at compile, naming the view
file and the feature, with the fix: declare it under ``aggregations:`` (README rule 9), whose
value both paths compute at their own instant. A feature whose value deliberately belongs to
its row (``row_window: true``) is let through.

What is looked at: the expression the view's own SELECT gives the feature (macros included, as
rendered), for a window whose frame is a bounded ``RANGE`` reaching back (``RANGE <offset>
PRECEDING``). Running totals (``UNBOUNDED PRECEDING``) and row-count frames (``ROWS 9
PRECEDING``: the last ten rows) mean the same at the row and later, and are not refused. A
window computed in an upstream model is not seen (the guard reads the view's SQL only).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

from fsql.definitions import FeatureView
from fsql.errors import DefinitionError


def _decaying(expression: exp.Expr, named: dict[str, exp.Window]) -> exp.Window | None:
    """The first window in ``expression`` with a bounded ``RANGE ... PRECEDING`` frame, its
    own or that of the named window (``WINDOW w AS (...)``) it refers to."""
    for window in expression.find_all(exp.Window):
        spec = window.args.get("spec")
        base = window.args.get("alias")
        if spec is None and isinstance(base, exp.Identifier) and base.name in named:
            window = named[base.name]
            spec = window.args.get("spec")
        if spec is None or str(spec.args.get("kind", "")).upper() != "RANGE":
            continue
        start = spec.args.get("start")
        if isinstance(start, exp.Expr) and str(spec.args.get("start_side", "")).upper() == (
                "PRECEDING"):
            return window
    return None


def row_windows(views: Iterable[tuple[FeatureView, exp.Query]], dialect: str
                ) -> list[DefinitionError]:
    """One error per feature of an online latest-row view computed by a trailing time window
    in the view's SELECT (``views``: each view with its compiled query)."""
    errors: list[DefinitionError] = []
    for view, query in views:
        if not view.online or view.aggregations or not isinstance(query, exp.Select):
            continue
        produced = {e.alias_or_name: e for e in query.selects}
        named = {w.this.name: w for w in query.args.get("windows") or []
                 if isinstance(w.this, exp.Identifier)}
        for feature in view.features:
            expression = produced.get(feature.name)
            if expression is None or feature.row_window:
                continue
            window = _decaying(expression, named)
            if window is None:
                continue
            frame = window.args["spec"].sql(dialect)
            errors.append(DefinitionError(
                view.path, f"feature '{feature.name}' of online view '{view.name}' is a time "
                f"window evaluated at each row of {view.sql_path} ({frame}): online it is read "
                "from the entity's latest row, so it means 'in the window before the last row' "
                "and never decays, while training reads it at the label time",
                line=feature.line,
                hint="declare it under aggregations: (README rule 9), whose value training and "
                "serving compute at their own instant; or set row_window: true on the feature "
                "if the value really belongs to its row."))
    return errors
