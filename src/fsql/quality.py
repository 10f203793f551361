"""Data tests (``fsql test``), executed by great-expectations.

Declared in YAML next to features, views, models and training sets (see definitions.DataTest).
Each test becomes one GX expectation; fsql adds only what GX does not do: reading the needed
columns of a relation from the engine, and telling a test that *raised* (status ``error``)
apart from one that found bad rows (``fail``).

GX runs on its pandas data source: its SQL data source over duckdb-engine was seen returning
empty metrics (every expectation "failed" with the real error hidden in ``exception_info``).
Only the columns the tests of a relation need are fetched, plus its key columns (entity join
keys and event time), so memory is the size of those columns. A failure reports the keys of a
sample of its failing rows and their count; with ``store_failures`` the failing rows (every
column) are written to ``<folder>/<test id>.parquet``, overwritten on each run of that test.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from fsql.compile import CompiledNode, CompiledProject, CompiledTrainingSet
from fsql.definitions import DataTest, FeatureView
from fsql.engines.base import Engine
from fsql.errors import CheckFailed, DefinitionError
from fsql.gx_expectations import COMMON, EXPECTATIONS

if TYPE_CHECKING:
    import pandas as pd

    from fsql.build import Progress
    from fsql.pit import PitStrategy

BUILTIN = ("not_null", "unique", "accepted_values", "accepted_range", "relationships",
           "row_count", "max_null_fraction")
_COLUMN_ONLY = {"not_null", "accepted_values", "accepted_range", "relationships",
                "max_null_fraction"}
_ARGS: dict[str, set[str]] = {
    "not_null": set(), "unique": {"columns"}, "accepted_values": {"values"},
    "accepted_range": {"min", "max"}, "relationships": {"to", "field"},
    "row_count": {"min", "max"}, "max_null_fraction": {"value"},
}
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class TestTarget:
    """A relation with its declared tests."""

    id: str  # node id or training_set:name
    relation: exp.Expr
    columns: tuple[str, ...]
    tests: tuple[DataTest, ...]
    #: the columns that say which rows fail: entity join keys and event time
    keys: tuple[str, ...] = ()
    #: when set, the relation is built for the engine that runs the tests, from its
    #: point-in-time strategy (a view of aggregations: its values now, ``window_values_at``),
    #: and ``relation`` is the view itself
    per_engine: Callable[[PitStrategy], exp.Expr] | None = None

    def query(self, engine: Engine) -> exp.Expr:
        """The relation the tests read, as ``engine`` runs it."""
        if self.per_engine is None:
            return self.relation.copy()
        return self.per_engine(engine.pit_strategy())


@dataclass
class TestResult:
    """The outcome of one test."""

    test: str
    object: str
    status: str  # pass | fail | warn (a failing severity-warn test) | error
    failing: int | None = None
    examples: list[Any] = field(default_factory=list)
    message: str = ""
    path: str = ""
    line: int = 0
    severity: str = "error"
    #: key columns (entity join keys, event time) of up to ``EXAMPLES`` failing rows
    failing_keys: list[dict[str, Any]] = field(default_factory=list)
    #: where ``store_failures`` wrote the failing rows
    failures_file: str | None = None

    @property
    def blocking(self) -> bool:
        """Fails ``fsql test`` and gates build and sync (a ``warn`` does not)."""
        return self.status in ("fail", "error")

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "object": self.object, "status": self.status,
                "severity": self.severity, "failing": self.failing,
                "examples": [repr(e) for e in self.examples],
                "failing_keys": self.failing_keys, "failures_file": self.failures_file,
                "message": self.message, "path": self.path, "line": self.line}

    def summary(self) -> str:
        """One line for a gate's message or warning."""
        return (f"{self.status}: {self.test} on {self.object} ({self.path}:{self.line})"
                f"{': ' + self.message if self.message else ''}"
                f"{' e.g. ' + repr(self.examples) if self.examples else ''}"
                f"{' at ' + self.keys_text() if self.failing_keys else ''}")

    def keys_text(self) -> str:
        """The failing keys for people: ``user_id=3 ts=2024-01-01 00:00:00; ...``."""
        shown = "; ".join(" ".join(f"{k}={v}" for k, v in row.items())
                          for row in self.failing_keys)
        more = (self.failing or 0) - len(self.failing_keys)
        return f"{shown} (+{more} more)" if shown and more > 0 else shown


def _gx() -> Any:
    _no_spark_connect_exit()
    with warnings.catch_warnings():  # GX imports deprecated stdlib modules
        warnings.simplefilter("ignore")
        import great_expectations as gx
    return gx


def _no_spark_connect_exit() -> None:
    """GX probes ``pyspark.sql.connect`` when pyspark is installed (the ``spark`` extra). In a
    process whose ``__main__`` has neither a spec nor a file (``python -c``, some embedders)
    and without Spark Connect's grpc packages, that import takes the process for a doctest run
    and calls ``sys.exit(0)``: the command would stop silently with exit 0. In exactly that
    case the import cannot succeed anyway, so it is made an ImportError, which GX handles
    (fsql's Spark engine uses classic sessions, not Spark Connect)."""
    import importlib.util
    import sys

    main = sys.modules.get("__main__")
    if main is None or main.__spec__ is not None or hasattr(main, "__file__") \
            or hasattr(sys, "ps1"):
        return
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("grpc"):
        return
    for name in ("pyspark.sql.connect.dataframe", "pyspark.sql.connect.session"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class _Declared:
    """Stands in for ``gx.expectations`` when only checking declarations (``fsql compile``
    must not import GX): its classes are the names of ``EXPECTATIONS``, and "constructing" one
    checks the argument names and returns None."""

    _classes = {_camel(name): frozenset((*COMMON, *args)) for name, args in EXPECTATIONS.items()}

    def __getattr__(self, camel: str) -> Any:
        allowed = self._classes.get(camel)
        if allowed is None:
            raise AttributeError(camel)

        def check(**kwargs: Any) -> None:
            unknown = sorted(set(kwargs) - allowed)
            if unknown:
                raise ValueError(f"unknown argument(s) {', '.join(unknown)}")

        return check


def default_unique_columns(view: FeatureView, project: CompiledProject) -> list[str]:
    keys = [k for e in view.entities for k in project.spec.entities[e].join_keys]
    return [*keys, view.timestamp]


def targets(project: CompiledProject, node_ids: Iterable[str] | None = None
            ) -> list[TestTarget]:
    """Every relation with tests (or only those in ``node_ids``), in DAG order."""
    wanted = set(node_ids) if node_ids is not None else None
    found: list[TestTarget] = []
    for node_id in project.graph.order:
        if wanted is not None and node_id not in wanted:
            continue
        if node_id.startswith("training_set:"):
            ts = project.training_sets[node_id.split(":", 1)[1]]
            columns = (*ts.plan.output_spine, *ts.plan.feature_columns)
            if ts.definition.tests:
                found.append(TestTarget(node_id, ts.query.subquery(), columns,
                                        ts.definition.tests, training_set_keys(ts)))
            continue
        node = project.nodes.get(node_id)
        if node is None:
            continue
        d = node.definition
        tests: tuple[DataTest, ...] = getattr(d, "tests", ())
        if isinstance(d, FeatureView) and d.aggregations:
            found += _aggregation_targets(project, node)
            tests = d.tests
        elif isinstance(d, FeatureView):
            tests = d.tests + tuple(t for f in d.features for t in f.tests)
        keys = (*(k for e in d.entities for k in project.spec.entities[e].join_keys),
                d.timestamp) if isinstance(d, FeatureView) else ()
        if tests:
            found.append(TestTarget(node_id, exp.to_table(node.relation, quoted=True),
                                    tuple(c.name for c in node.columns), tests, keys))
    return found


def training_set_keys(ts: CompiledTrainingSet) -> tuple[str, ...]:
    """The spine's join keys and timestamp: what identifies a training set row."""
    keys = [k for j in ts.plan.joins for k in j.keys if k in ts.plan.output_spine]
    return tuple(dict.fromkeys([*keys, ts.plan.spine_ts]))


def _aggregation_targets(project: CompiledProject, node: CompiledNode) -> list[TestTarget]:
    """The tests of a view's aggregations run on their values now (``window_values_at``):
    what the online store serves at this instant, for every entity with rows in a window."""
    from fsql.online.sync import view_join
    from fsql.pit import window_values_at

    view = node.definition
    assert isinstance(view, FeatureView)
    tests = tuple(t for f in view.features for t in f.tests)
    if not tests:
        return []
    join = view_join(node, project)
    now = int(round(time.time() * 1_000_000))
    types = {c.name: c.dtype for c in node.columns}

    def values_now(strategy: PitStrategy) -> exp.Expr:
        return window_values_at(join, now, strategy, types).subquery()

    return [TestTarget(node.id, exp.to_table(node.relation, quoted=True),
                       (*join.keys, *(f.name for f in view.features)), tests, join.keys,
                       values_now)]


def check_declarations(project: CompiledProject) -> list[DefinitionError]:
    """Compile-time checks: known test, right arguments, existing columns and targets."""
    errors: list[DefinitionError] = []
    all_targets = targets(project)
    if not all_targets:
        return errors
    for target in all_targets:
        for test in target.tests:
            try:
                _expectation(_Declared(), test, target, project, check_only=True)
            except (ValueError, TypeError) as err:
                errors.append(DefinitionError(test.path, f"test '{test.label()}' on "
                                              f"{target.id}: {err}", line=test.line or None))
    return errors


def _expectation(E: Any, test: DataTest, target: TestTarget, project: CompiledProject,
                 check_only: bool = False, engine: Engine | None = None) -> Any:
    """The GX expectation for one declared test (raises ValueError on a bad declaration);
    ``E`` is ``gx.expectations``, or ``_Declared()`` to check a declaration without GX."""
    args = test.kwargs
    column = test.column or args.get("column")
    if column is not None and column not in target.columns:
        raise ValueError(f"column '{column}' does not exist (columns: "
                         f"{', '.join(target.columns)})")
    if test.name in BUILTIN:
        unknown = set(args) - _ARGS[test.name] - {"column"}
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(_ARGS[test.name])) or 'none'}")
        if test.name in _COLUMN_ONLY and column is None:
            raise ValueError("declare it under a feature (or columns:), or give column:")
    name = test.name
    if name == "not_null":
        return E.ExpectColumnValuesToNotBeNull(column=column)
    if name == "unique":
        if column is not None:
            return E.ExpectColumnValuesToBeUnique(column=column)
        columns = args.get("columns")
        if columns is None:
            view = project.nodes[target.id].definition if target.id in project.nodes else None
            if not isinstance(view, FeatureView):
                raise ValueError("give columns: [...] (the default, join keys + event "
                                 "timestamp, exists only for feature views)")
            columns = default_unique_columns(view, project)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValueError("columns must be a list of column names")
        missing = [c for c in columns if c not in target.columns]
        if missing:
            raise ValueError(f"column(s) {', '.join(missing)} do not exist")
        if len(columns) == 1:
            return E.ExpectColumnValuesToBeUnique(column=columns[0])
        return E.ExpectCompoundColumnsToBeUnique(column_list=columns)
    if name == "accepted_values":
        values = args.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError("give values: [a, b, ...]")
        return E.ExpectColumnValuesToBeInSet(column=column, value_set=values)
    if name in ("accepted_range", "row_count"):
        low, high = args.get("min"), args.get("max")
        if low is None and high is None:
            raise ValueError("give min:, max: or both")
        for bound in (low, high):
            if bound is not None and (isinstance(bound, bool)
                                      or not isinstance(bound, int | float)):
                raise ValueError(f"min/max must be numbers, got {bound!r}")
        if name == "row_count":
            return E.ExpectTableRowCountToBeBetween(min_value=low, max_value=high)
        return E.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
    if name == "max_null_fraction":
        value = args.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"give a fraction between 0 and 1, got {value!r}")
        return E.ExpectColumnValuesToNotBeNull(column=column, mostly=1 - float(value))
    if name == "relationships":
        other, other_field = args.get("to"), args.get("field", column)
        node = next((n for n in project.nodes.values()
                     if n.name == other and n.kind in ("model", "view")), None)
        if node is None:
            raise ValueError(f"'to: {other}' names no model or feature view")
        if other_field not in {c.name for c in node.columns}:
            raise ValueError(f"'{other}' has no column '{other_field}'")
        if check_only or engine is None:
            return None
        distinct = engine.fetch_arrow(exp.select(exp.column(other_field, quoted=True))
                                      .distinct().from_(exp.to_table(node.relation, quoted=True))
                                      .where(exp.column(other_field, quoted=True)
                                             .is_(exp.null()).not_()))
        return E.ExpectColumnValuesToBeInSet(column=column,
                                             value_set=distinct.column(0).to_pylist())
    if not re.fullmatch(r"expect_[a-z0-9_]+", name) or not hasattr(E, _camel(name)):
        raise ValueError(f"unknown test '{name}'; use one of {', '.join(BUILTIN)} or a "
                         "great-expectations expectation name (expect_...)")
    if column is not None and "column" not in args and test.column is not None:
        args["column"] = column
    try:
        return getattr(E, _camel(name))(**args)
    except Exception as err:  # noqa: BLE001 - pydantic validation of the user's arguments
        raise ValueError(f"bad arguments for {name}: {str(err).splitlines()[-1]}") from None


def _needed_columns(tests: Iterable[Any], target: TestTarget) -> list[str]:
    """Columns the expectations read (at least one, for row counts)."""
    needed: list[str] = []
    for expectation in tests:
        config = expectation.configuration.kwargs
        for key in ("column", "column_A", "column_B"):
            if key in config and config[key] not in needed:
                needed.append(config[key])
        for column in config.get("column_list") or []:
            if column not in needed:
                needed.append(column)
    return needed or [target.columns[0]]


def run(project: CompiledProject, engine: Engine, selected: list[TestTarget],
        progress: Progress | None = None, store_failures: Path | None = None
        ) -> list[TestResult]:
    """Run the tests of ``selected`` relations (views must exist in the engine session),
    reporting each test to ``progress``; with ``store_failures``, write the failing rows of each
    failed test to ``<store_failures>/<test id>.parquet`` (and remove that file when it
    passes)."""
    if not selected:
        return []
    from fsql.build import Silent

    step = progress or Silent()
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                         metric_calculations=False)
    asset = context.data_sources.add_pandas("fsql").add_dataframe_asset("relation")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")
    # every failing row's index only to store them; else GX's sample of 20
    detail = "SUMMARY" if store_failures is None else "COMPLETE"
    step.start(sum(len(t.tests) for t in selected))
    results: list[TestResult] = []
    for target in selected:
        planned = []
        for test in target.tests:
            try:
                planned.append((test, _expectation(gx.expectations, test, target, project,
                                                   engine=engine)))
            except ValueError as err:
                results.append(TestResult(test.label(), target.id, "error", message=str(err),
                                          path=test.path, line=test.line,
                                          severity=test.severity))
                step.step(f"{target.id}: {test.label()}", 0.0)
        if not planned:
            continue
        step.step(f"{target.id}: reading", None)
        columns = (list(target.columns) if store_failures is not None else
                   list(dict.fromkeys([*(k for k in target.keys if k in target.columns),
                                       *_needed_columns((e for _, e in planned), target)])))
        frame = engine.fetch_arrow(
            exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(
                target.query(engine))).to_pandas()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        for test, expectation in planned:
            label = f"{target.id}: {test.label()}"
            step.step(label, None)
            started = time.perf_counter()
            result, rows = _outcome(test, target, batch.validate(
                expectation, result_format={"result_format": detail}), frame)
            if store_failures is not None:
                _store(result, rows, store_failures / f"{test_id(target, test)}.parquet")
            results.append(result)
            step.step(label, time.perf_counter() - started)
    return results


def test_id(target: TestTarget, test: DataTest) -> str:
    """A file name for one test: object, test, column and line
    (``view_scores.not_null.score.12``)."""
    parts = [target.id, test.name, test.column or "", str(test.line)]
    return re.sub(r"[^A-Za-z0-9_.]+", "_", ".".join(p for p in parts if p))


def _store(result: TestResult, rows: pd.DataFrame | None, path: Path) -> None:
    """Write the failing ``rows`` of ``result`` to ``path``, or remove a stale file there."""
    if rows is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rows.to_parquet(tmp, index=False)
    tmp.replace(path)
    result.failures_file = str(path)


def require_passing(project: CompiledProject, engine: Engine, selected: list[TestTarget],
                    outcome: str, override: str) -> list[TestResult]:
    """Run the tests of ``selected`` and raise ``CheckFailed`` listing every one that did not
    pass: the gate of ``fsql build`` and ``fsql sync`` (``outcome`` says what was therefore not
    done, ``override`` how to skip the tests). Tests with ``severity: warn`` never block: the
    failing ones are returned, for the caller to warn about."""
    results = run(project, engine, selected)
    bad = [r for r in results if r.blocking]
    if bad:
        lines = "\n".join(f"- {r.summary()}" for r in bad)
        raise CheckFailed(f"{len(bad)} data test(s) did not pass; {outcome}:\n"
                          f"{lines}\n  hint: run fsql test for details, or {override}")
    return [r for r in results if r.status == "warn"]


def _raised(info: Any) -> str | None:
    """The message of an exception GX caught while validating, if any."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "raised an exception")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "raised an exception")
    return None


def _outcome(test: DataTest, target: TestTarget, validation: Any, frame: pd.DataFrame
             ) -> tuple[TestResult, pd.DataFrame | None]:
    """The result of one validation, and the failing rows of ``frame`` if it failed on rows
    (a table-level test such as row_count has none): all of them with GX's ``COMPLETE``
    result format, else a sample."""
    raised = _raised(validation.exception_info)
    result = TestResult(test.label(), target.id, "pass", path=test.path, line=test.line,
                        severity=test.severity)
    if raised is not None:
        result.status, result.message = "error", raised
        return result, None
    details = validation.result or {}
    result.failing = details.get("unexpected_count")
    if validation.success:
        return result, None
    result.status = "warn" if test.severity == "warn" else "fail"
    result.examples = list(details.get("partial_unexpected_list") or [])[:EXAMPLES]
    if "observed_value" in details:
        result.message = f"observed {details['observed_value']}"
    indexes = details.get("unexpected_index_list", details.get("partial_unexpected_index_list"))
    if indexes is None:
        return result, None
    rows = frame.iloc[list(indexes)]
    keys = [k for k in target.keys if k in rows.columns]
    if keys:
        result.failing_keys = [{k: _plain(v) for k, v in row.items()}
                               for row in rows[keys].head(EXAMPLES).to_dict("records")]
    return result, rows


def _plain(value: Any) -> Any:
    """A pandas cell as a JSON-friendly value (timestamps as ISO text)."""
    return value.isoformat(sep=" ") if hasattr(value, "isoformat") else (
        value.item() if hasattr(value, "item") else value)


def training_set_target(ts: CompiledTrainingSet, relation: exp.Expr) -> TestTarget | None:
    """A training set's tests against a relation (its staged Parquet file during a build)."""
    if not ts.definition.tests:
        return None
    return TestTarget(f"training_set:{ts.definition.name}", relation,
                      (*ts.plan.output_spine, *ts.plan.feature_columns), ts.definition.tests,
                      training_set_keys(ts))
