"""Frozen definitions, one dataclass per kind, each built only by its ``from_raw``.

``from_raw`` takes the raw YAML mapping (``yamlio.Mapping``, which knows its lines) and either
returns a definition or raises ``DefinitionError`` naming the file and line. Unknown keys are
errors, so a typo such as ``tll: 30d`` never silently means "no ttl".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fsql.dtypes import FeatureType
from fsql.errors import DefinitionError
from fsql.yamlio import Mapping

X = TypeVar("X")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TTL = re.compile(r"^\s*(\d+)\s*(w|d|h|m|s)\s*$")
_TTL_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_TTL_MAX_SECONDS = 100 * 366 * 86400  # past a century, leave the ttl out (no lower bound)
#: which feature rows a spine row may use: stamped at or before its time (``inclusive``, README
#: point-in-time rule 1), or strictly before it (``exclusive``)
FeatureCutoff = Literal["inclusive", "exclusive"]
FEATURE_CUTOFFS: tuple[FeatureCutoff, ...] = ("inclusive", "exclusive")


class _Fields:
    """Reads the keys of one raw mapping with type checks; rejects keys it was not asked for."""

    def __init__(self, raw: Any, path: str, what: str, line: int = 0) -> None:
        if not isinstance(raw, dict):
            raise DefinitionError(
                path, f"{what} must be a mapping, found {type(raw).__name__}", line=line or None
            )
        self.raw = raw
        self.path = path
        self.what = what
        self.line = raw.line if isinstance(raw, Mapping) else line
        self._seen: set[str] = set()

    def line_of(self, key: str) -> int:
        return self.raw.line_of(key) if isinstance(self.raw, Mapping) else self.line

    def error(self, key: str | None, message: str, hint: str | None = None) -> DefinitionError:
        line = self.line_of(key) if key else self.line
        return DefinitionError(self.path, message, line=line or None, hint=hint)

    def get(self, key: str, kind: type[X] | tuple[type, ...], default: Any = None) -> Any:
        self._seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            return default
        value = self.raw[key]
        if isinstance(value, bool) and kind in (int, str):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(
                k.__name__ for k in kind
            )
            raise self.error(
                key,
                f"{self.what}: '{key}' must be {_article(expected)}, "
                f"found {type(value).__name__} {value!r}",
            )
        return value

    def require(self, key: str, kind: type[X] | tuple[type, ...]) -> Any:
        value = self.get(key, kind)
        if value is None:
            raise self.error(None, f"{self.what}: missing required key '{key}'")
        return value

    def name(self, key: str = "name", default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value is None:
            raise self.error(None, f"{self.what}: missing required key '{key}'")
        if not _NAME.match(value):
            raise self.error(
                key,
                f"{self.what}: '{value}' is not a valid name",
                hint="use letters, digits and underscores, not starting with a digit.",
            )
        return str(value)

    def dtype(self, what: str, default: str | None = None) -> FeatureType:
        """The ``type`` key as a ``FeatureType`` (``default`` when absent); errors name
        ``what`` (e.g. "feature 'x'")."""
        text = self.require("type", str) if default is None else self.get("type", str, default)
        try:
            return FeatureType.parse(text)
        except ValueError as err:
            raise self.error("type", f"{what}: {err}") from None

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list, str), default=[])
        items = [value] if isinstance(value, str) else value
        for item in items:
            if not isinstance(item, str) or not _NAME.match(item):
                raise self.error(key, f"{self.what}: '{key}' entries must be names, found {item!r}")
        return tuple(items)

    def done(self) -> None:
        """Raise on the first key that no ``get`` asked for."""
        for key in self.raw:
            if key not in self._seen:
                allowed = ", ".join(sorted(self._seen))
                raise self.error(
                    key, f"{self.what}: unknown key '{key}'", hint=f"allowed keys: {allowed}."
                )


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def read_list(
    raw: Any, key: str, path: str, build: Callable[[Any, str, int], X], line: int = 0
) -> list[X]:
    """Build each item of the list ``raw`` with ``build(item, path, item_line)``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DefinitionError(path, f"'{key}' must be a list", line=line or None)
    return [build(item, path, item.line if isinstance(item, Mapping) else line) for item in raw]


@dataclass(frozen=True, slots=True)
class Ttl:
    """How long a feature value stays valid after its event timestamp."""

    seconds: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Ttl:
        m = _TTL.match(text)
        if not m or int(m.group(1)) == 0:
            raise ValueError(
                f"invalid ttl '{text}'; write a positive number and a unit: "
                "'30d', '12h', '90m', '45s', '2w' (or leave it out for no ttl)"
            )
        seconds = int(m.group(1)) * _TTL_SECONDS[m.group(2)]
        if seconds > _TTL_MAX_SECONDS:
            raise ValueError(f"ttl '{text}' is longer than 100 years; leave ttl out for no "
                             "lower bound")
        return cls(seconds, text.strip())

    def __str__(self) -> str:
        return self.text


#: a data test's ``severity:``; ``warn`` failures are reported and do not fail
SEVERITIES = ("error", "warn")


@dataclass(frozen=True, slots=True)
class DataTest:
    """One declared data test: a built-in (``not_null``, ``unique``, ``accepted_values``,
    ``accepted_range``, ``relationships``, ``row_count``, ``max_null_fraction``) or any
    great-expectations expectation by name (``expect_column_values_to_match_regex``), with its
    arguments. ``column`` is set for tests declared under a feature or column. ``severity``
    (``severity: warn`` among the arguments, as in dbt): a failing ``warn`` test is reported but
    neither fails ``fsql test`` nor gates a build or sync."""

    name: str
    args: tuple[tuple[str, Any], ...]
    column: str | None
    path: str
    line: int
    severity: str = "error"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    def label(self) -> str:
        return f"{self.name}({self.column})" if self.column else self.name


def tests_from_raw(raw: Any, path: str, line: int, column: str | None = None
                   ) -> tuple[DataTest, ...]:
    """``tests:`` -> DataTests. Each item is a name or a one-key mapping ``name: {args}``
    (a bare value is the single argument of tests that take one, e.g. max_null_fraction)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise DefinitionError(path, "'tests' must be a list", line=line or None,
                              hint="tests: [not_null, {accepted_range: {min: 0}}]")
    tests = []
    for item in raw:
        item_line = item.line if isinstance(item, Mapping) else line
        if isinstance(item, str):
            tests.append(DataTest(item, (), column, path, item_line or line))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise DefinitionError(path, f"a test is a name or a one-key mapping, found {item!r}",
                                  line=item_line or None,
                                  hint="e.g. - not_null  or  - accepted_range: {min: 0}")
        name, args = next(iter(item.items()))
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            args = {"value": args}
        args = dict(args)
        severity = args.pop("severity", "error")
        if severity not in SEVERITIES:
            raise DefinitionError(path, f"test '{name}': severity must be warn or error, "
                                  f"not {severity!r}", line=item_line or line or None,
                                  hint=f"- {name}: {{severity: warn}}")
        tests.append(DataTest(str(name), tuple(sorted(args.items())), column, path,
                              item_line or line, severity))
    return tuple(tests)


def _table_and_column_tests(f: _Fields) -> tuple[DataTest, ...]:
    """``tests: [...]`` for the whole relation plus ``columns: {name: [tests]}``."""
    tests = tests_from_raw(f.get("tests", list), f.path, f.line_of("tests"))
    columns = f.get("columns", dict, {})
    for column, raw in columns.items():
        line = columns.line_of(column) if isinstance(columns, Mapping) else f.line
        tests += tests_from_raw(raw, f.path, line, column=str(column))
    return tests


@dataclass(frozen=True, slots=True)
class Entity:
    """Something features describe, identified by one or more join keys."""

    name: str
    join_keys: tuple[str, ...]
    description: str
    path: str
    line: int

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> Entity:
        f = _Fields(raw, path, "entity", line)
        name = f.name()
        keys = f.names("join_keys")
        if not keys:
            raise f.error(None, f"entity '{name}': 'join_keys' needs at least one column")
        entity = cls(name, keys, f.get("description", str, ""), path, f.line)
        f.done()
        return entity


#: the functions a time-window aggregation may use
AGG_FUNCTIONS = ("count", "sum", "avg", "min", "max", "last")
# default hop per window length (Chronon's rule): the first that divides the window and is not
# longer than it, of those allowed for its length
_HOPS = ((12 * 86400, ("1d", "1h", "5m", "1m", "1s")), (12 * 3600, ("1h", "5m", "1m", "1s")),
         (0, ("5m", "1m", "1s")))


@dataclass(frozen=True, slots=True)
class Aggregation:
    """How one aggregation feature is computed from its view's rows: ``function`` of
    ``column`` (None: count rows) over the hopped window of length ``window`` ending at the
    instant asked about (README, point-in-time rule 9)."""

    function: str
    column: str | None
    window: Ttl
    hop: Ttl

    @property
    def window_micros(self) -> int:
        return self.window.seconds * 1_000_000

    @property
    def hop_micros(self) -> int:
        return self.hop.seconds * 1_000_000

    @property
    def tiles(self) -> int:
        """Whole hops in the window: at t the window covers the hop holding t and this many
        hops before it."""
        return self.window.seconds // self.hop.seconds

    @property
    def signature(self) -> str:
        return f"{self.function}({self.column or '*'}) over {self.window} hop {self.hop}"

    @staticmethod
    def default_hop(window: Ttl) -> Ttl:
        for longer_than, hops in _HOPS:
            if window.seconds >= longer_than:
                for text in hops:
                    hop = Ttl.parse(text)
                    if hop.seconds <= window.seconds and window.seconds % hop.seconds == 0:
                        return hop
        return Ttl.parse("1s")


@dataclass(frozen=True, slots=True)
class Feature:
    """One declared feature column of a feature view, or one aggregation of a view that
    declares ``aggregations:`` (then ``aggregation`` says how it is computed)."""

    name: str
    dtype: FeatureType
    description: str
    line: int
    tests: tuple[DataTest, ...] = ()
    aggregation: Aggregation | None = None
    #: a time window over the view's rows that deliberately belongs to the row (the guard of
    #: ``row_windows.py`` lets it be served online)
    row_window: bool = False

    @property
    def stored_type(self) -> str:
        """The type readers check online values against: for an aggregation its type and how
        it is computed, since its stored state only answers for that window and function."""
        if self.aggregation is None:
            return self.dtype.name
        return f"{self.dtype.name} = {self.aggregation.signature}"

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> Feature:
        f = _Fields(raw, path, "feature", line)
        name = f.name()
        dtype = f.dtype(f"feature '{name}'")
        tests = tests_from_raw(f.get("tests", list), path, f.line_of("tests"), column=name)
        feature = cls(name, dtype, f.get("description", str, ""), f.line, tests,
                      row_window=f.get("row_window", bool, False))
        f.done()
        return feature

    @classmethod
    def aggregation_from_raw(cls, raw: Any, path: str, line: int = 0) -> Feature:
        """One entry of ``aggregations:``: ``{name, function, column, window, hop, type}``."""
        f = _Fields(raw, path, "aggregation", line)
        name = f.name()
        what = f"aggregation '{name}'"
        function = f.require("function", str)
        if function not in AGG_FUNCTIONS:
            raise f.error("function", f"{what}: unknown function '{function}'",
                          hint=f"use one of: {', '.join(AGG_FUNCTIONS)}.")
        column = f.get("column", str)
        if column is None and function != "count":
            raise f.error(None, f"{what}: {function} needs a 'column' to aggregate")
        if column is not None and not _NAME.match(column):
            raise f.error("column", f"{what}: 'column' must name a column of the view's SQL")
        durations = {}
        for key in ("window", "hop"):
            text = f.require(key, str) if key == "window" else f.get(key, str)
            try:
                durations[key] = Ttl.parse(text) if text is not None else None
            except ValueError as err:
                message = str(err).replace("ttl", key).replace(" (or leave it out for no "
                                                               f"{key})", "")
                raise f.error(key, f"{what}: {message}") from None
        window = durations["window"]
        assert window is not None
        hop = durations["hop"] or Aggregation.default_hop(window)
        if window.seconds % hop.seconds:
            raise f.error("hop", f"{what}: the window ({window}) must be a whole number of "
                          f"hops ({hop})", hint="pick a hop that divides the window, e.g. "
                          "window: 1h, hop: 5m.")
        implied = {"count": "int64", "avg": "float64"}.get(function)
        if implied is None and f.get("type", str) is None:
            raise f.error(None, f"{what}: declare its 'type' (what {function} gives for "
                          f"column '{column}')", hint="fsql compile tells the type if unsure.")
        dtype = f.dtype(what, implied)
        tests = tests_from_raw(f.get("tests", list), path, f.line_of("tests"), column=name)
        feature = cls(name, dtype, f.get("description", str, ""), f.line, tests,
                      Aggregation(function, column, window, hop))
        f.done()
        return feature


@dataclass(frozen=True, slots=True)
class FeatureView:
    """A set of features computed by one SQL template, keyed by entities and event time."""

    name: str
    entities: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    ttl: Ttl | None
    online: bool
    owner: str
    tags: tuple[str, ...]
    description: str
    materialized: str
    features: tuple[Feature, ...]
    path: str
    sql_path: str
    line: int
    tests: tuple[DataTest, ...] = ()
    freshness: Ttl | None = None

    @classmethod
    def from_raw(cls, raw: Any, path: str, sql_path: str, stem: str) -> FeatureView:
        f = _Fields(raw, path, "feature_view")
        name = f.name(default=stem)
        what = f"feature view '{name}'"
        entities = f.names("entities") + f.names("entity")
        if not entities:
            raise f.error(None, f"{what}: declare its 'entities' (or 'entity')")
        ttl_raw = f.get("ttl", str)
        try:
            ttl = Ttl.parse(ttl_raw) if ttl_raw is not None else None
        except ValueError as err:
            raise f.error("ttl", f"{what}: {err}") from None
        fresh_raw = f.get("freshness", str)
        try:
            freshness = Ttl.parse(fresh_raw) if fresh_raw is not None else None
        except ValueError as err:
            raise f.error("freshness", f"{what}: freshness: {err}".replace("ttl", "duration")
                          ) from None
        materialized = f.get("materialized", str, "view")
        if materialized not in ("view", "table"):
            raise f.error("materialized", f"{what}: materialized must be 'view' or 'table'")
        plain, windowed = f.get("features", list), f.get("aggregations", list)
        if (plain is None) == (windowed is None):
            raise f.error(None, f"{what}: declare either 'features' (columns of its latest "
                          "row) or 'aggregations' (time windows over its rows)",
                          hint="a view with both: split it into two views.")
        if windowed is not None:
            features = read_list(windowed, "aggregations", path, Feature.aggregation_from_raw,
                                 f.line_of("aggregations"))
            if ttl is not None:
                raise f.error("ttl", f"{what}: a view of aggregations has no ttl: each "
                              "aggregation's window bounds the rows it uses")
        else:
            features = read_list(plain, "features", path, Feature.from_raw,
                                 f.line_of("features"))
        if not features:
            raise f.error("aggregations" if windowed is not None else "features",
                          f"{what}: declare at least one feature")
        seen: dict[str, Feature] = {}
        for feat in features:
            if feat.name in seen:
                raise DefinitionError(
                    path, f"{what}: feature '{feat.name}' is declared twice "
                    f"(first on line {seen[feat.name].line})", line=feat.line,
                )
            seen[feat.name] = feat
        view = cls(
            name=name,
            entities=entities,
            timestamp=f.require("timestamp", str),
            created_timestamp=f.get("created_timestamp", str),
            ttl=ttl,
            online=f.get("online", bool, False),
            owner=f.get("owner", str, ""),
            tags=f.names("tags"),
            description=f.get("description", str, ""),
            materialized=materialized,
            features=tuple(features),
            path=path,
            sql_path=sql_path,
            line=f.line,
            tests=tests_from_raw(f.get("tests", list), path, f.line_of("tests")),
            freshness=freshness,
        )
        f.done()
        return view

    def feature(self, name: str) -> Feature | None:
        return next((x for x in self.features if x.name == name), None)

    @property
    def aggregations(self) -> tuple[Feature, ...]:
        """Its aggregation features (all of its features, or none)."""
        return tuple(x for x in self.features if x.aggregation is not None)


@dataclass(frozen=True, slots=True)
class Source:
    """An external table: files (Parquet/CSV, globs allowed) or an existing engine table."""

    source_name: str
    table_name: str
    location: str | None
    table: str | None
    format: str
    description: str
    path: str
    line: int

    @property
    def name(self) -> str:
        return f"{self.source_name}.{self.table_name}"

    @property
    def relation(self) -> str:
        """Name of the engine view fsql creates for this source."""
        return f"{self.source_name}__{self.table_name}"

    @classmethod
    def from_raw(cls, raw: Any, path: str, source_name: str, line: int = 0) -> Source:
        f = _Fields(raw, path, f"source '{source_name}' table", line)
        name = f.name()
        location = f.get("path", str)
        table = f.get("table", str)
        if (location is None) == (table is None):
            raise f.error(
                None, f"source table '{source_name}.{name}': give exactly one of 'path' or 'table'",
                hint="path: data/orders/*.parquet reads files; table: schema.table reads the "
                "engine database.",
            )
        fmt = f.get("format", str)
        if location is not None and fmt is None:
            lowered = location.lower()
            fmt = next((x for x in ("parquet", "csv") if lowered.endswith(x)), None)
            if fmt is None:
                raise f.error("path", f"cannot tell the file format of '{location}'",
                              hint="add format: parquet or format: csv.")
        if fmt not in (None, "parquet", "csv"):
            raise f.error("format", f"unsupported format '{fmt}'; use parquet or csv")
        src = cls(source_name, name, location, table, fmt or "table",
                  f.get("description", str, ""), path, f.line)
        f.done()
        return src


def sources_from_raw(raw: Any, path: str, line: int = 0) -> list[Source]:
    """Parse one entry of a ``sources:`` list (a named group of tables)."""
    f = _Fields(raw, path, "source", line)
    name = f.name()
    f.get("description", str)
    tables = read_list(f.require("tables", list), "tables", path,
                       lambda item, p, ln: Source.from_raw(item, p, name, ln),
                       f.line_of("tables"))
    f.done()
    return tables


@dataclass(frozen=True, slots=True)
class ModelProperties:
    """Optional YAML properties of a SQL model (``models:`` in a models/*.yml file)."""

    name: str
    description: str
    tags: tuple[str, ...]
    path: str
    line: int
    tests: tuple[DataTest, ...] = ()

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> ModelProperties:
        f = _Fields(raw, path, "model", line)
        props = cls(f.name(), f.get("description", str, ""), f.names("tags"), path, f.line,
                    _table_and_column_tests(f))
        f.done()
        return props


@dataclass(frozen=True, slots=True)
class Model:
    """A dbt-style SQL model: ``models/<name>.sql``."""

    name: str
    sql_path: str
    description: str = ""
    tags: tuple[str, ...] = ()
    tests: tuple[DataTest, ...] = ()


@dataclass(frozen=True, slots=True)
class SpineRef:
    """Where a training set's rows come from, and which column is its timestamp."""

    model: str | None
    source: str | None
    timestamp: str
    line: int

    @property
    def target(self) -> str:
        return self.model or f"source:{self.source}"


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """``view`` (all its features) or ``view.feature`` in a training set's feature list."""

    view: str
    feature: str | None
    line: int

    def __str__(self) -> str:
        return f"{self.view}.{self.feature}" if self.feature else self.view

    @classmethod
    def parse(cls, text: str, line: int = 0) -> FeatureRef:
        parts = text.split(".")
        if len(parts) > 2 or not all(_NAME.match(p) for p in parts):
            raise ValueError(f"'{text}' is not 'view' or 'view.feature'")
        return cls(parts[0], parts[1] if len(parts) == 2 else None, line)


def repeated(refs: Sequence[FeatureRef]) -> str | None:
    """What a feature list asks for twice (``'v.x' is listed twice``, or listed both alone and
    through its whole view ``v``), or None when it asks for each feature once."""
    whole: set[str] = set()
    single: dict[str, FeatureRef] = {}
    for ref in refs:
        if ref.feature is None:
            part = next((s for s in single.values() if s.view == ref.view), None)
            if ref.view in whole:
                return f"'{ref.view}' is listed twice"
            if part is not None:
                return f"'{part}' is listed twice: on its own and through its view '{ref.view}'"
            whole.add(ref.view)
        elif str(ref) in single:
            return f"'{ref}' is listed twice"
        elif ref.view in whole:
            return f"'{ref}' is listed twice: on its own and through its view '{ref.view}'"
        else:
            single[str(ref)] = ref
    return None


def _allowed_lineage(f: _Fields, what: str) -> tuple[FeatureRef, ...]:
    """``allow_label_lineage: [view.feature, ...]``: each entry names one feature."""
    allowed: list[FeatureRef] = []
    for item in f.get("allow_label_lineage", list, []):
        ref = None
        if isinstance(item, str):
            try:
                ref = FeatureRef.parse(item, f.line_of("allow_label_lineage"))
            except ValueError:
                pass
        if ref is None or ref.feature is None:
            raise f.error("allow_label_lineage", f"{what}: allow_label_lineage entries are "
                          f"'view.feature' strings, found {item!r}",
                          hint="allow_label_lineage: [card_activity.fraud_rate]")
        allowed.append(ref)
    return tuple(allowed)


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """A spine joined point-in-time to a list of features; also the feature service served
    online under the same name."""

    name: str
    spine: SpineRef
    features: tuple[FeatureRef, ...]
    naming: str
    output: str | None
    description: str
    tags: tuple[str, ...]
    path: str
    line: int
    owner: str = field(default="")
    tests: tuple[DataTest, ...] = ()
    #: ``exclusive``: only feature rows stamped strictly before the spine time count (event
    #: spines whose label is known at the event); ``inclusive`` (default) also takes rows
    #: stamped exactly at the spine time
    feature_cutoff: FeatureCutoff = "inclusive"
    #: the spine's label column(s); a feature whose lineage reaches what a label is computed
    #: from is refused at compile (``labels.py``)
    label: tuple[str, ...] = ()
    label_line: int = 0
    #: features deliberately allowed to share lineage with the label (documented exceptions)
    allow_label_lineage: tuple[FeatureRef, ...] = ()

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> TrainingSet:
        f = _Fields(raw, path, "training set", line)
        name = f.name()
        what = f"training set '{name}'"
        spine_raw = f.require("spine", dict)
        s = _Fields(spine_raw, path, f"{what} spine", f.line_of("spine"))
        model, source = s.get("model", str), s.get("source", str)
        if (model is None) == (source is None):
            raise s.error(None, f"{what}: the spine needs exactly one of 'model' or 'source'",
                          hint="spine: {model: churn_labels, timestamp: label_ts}")
        spine = SpineRef(model, source, s.require("timestamp", str), s.line)
        s.done()
        refs: list[FeatureRef] = []
        for item in f.require("features", list):
            if not isinstance(item, str):
                raise f.error("features", f"{what}: features are 'view' or 'view.feature' strings")
            try:
                refs.append(FeatureRef.parse(item, f.line_of("features")))
            except ValueError as err:
                raise f.error("features", f"{what}: {err}") from None
        if not refs:
            raise f.error("features", f"{what}: request at least one feature")
        twice = repeated(refs)
        if twice is not None:
            raise f.error("features", f"{what}: {twice}", hint="list each feature once.")
        naming = f.get("naming", str, "plain")
        if naming not in ("plain", "prefixed"):
            raise f.error("naming", f"{what}: naming must be 'plain' (feature) or "
                          "'prefixed' (view__feature)")
        cutoff = f.get("feature_cutoff", str, "inclusive")
        if cutoff not in FEATURE_CUTOFFS:
            raise f.error("feature_cutoff", f"{what}: feature_cutoff must be 'inclusive' or "
                          f"'exclusive', not {cutoff!r}",
                          hint="feature_cutoff: exclusive leaves out feature rows stamped "
                          "exactly at the spine time (use it when the label is known at the "
                          "event); inclusive (the default) keeps them")
        ts = cls(name, spine, tuple(refs), naming, f.get("output", str),
                 f.get("description", str, ""), f.names("tags"), path, f.line,
                 f.get("owner", str, ""), _table_and_column_tests(f), cutoff,
                 f.names("label"), f.line_of("label"), _allowed_lineage(f, what))
        f.done()
        return ts


@dataclass(frozen=True, slots=True)
class RequestField:
    """A value the request carries (online) or the spine column of the same name (offline)."""

    name: str
    dtype: FeatureType
    line: int

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> RequestField:
        f = _Fields(raw, path, "request field", line)
        name = f.name()
        field_ = cls(name, f.dtype(f"request field '{name}'"), f.line)
        f.done()
        return field_


@dataclass(frozen=True, slots=True)
class OnDemandFeature:
    """One feature of an on-demand view: a SQL expression over request fields and inputs."""

    name: str
    dtype: FeatureType
    sql: str
    description: str
    line: int

    @classmethod
    def from_raw(cls, raw: Any, path: str, line: int = 0) -> OnDemandFeature:
        f = _Fields(raw, path, "on-demand feature", line)
        name = f.name()
        feature = cls(name, f.dtype(f"feature '{name}'"), f.require("sql", str),
                      f.get("description", str, ""), f.line)
        f.done()
        return feature


@dataclass(frozen=True, slots=True)
class OnDemandView:
    """Features computed at request time by one SQL expression each, from request fields and
    features of feature views (``inputs``); the same expression runs offline inside the
    point-in-time query and online in Python (``fsql.ondemand``)."""

    name: str
    request: tuple[RequestField, ...]
    inputs: tuple[FeatureRef, ...]
    features: tuple[OnDemandFeature, ...]
    description: str
    owner: str
    tags: tuple[str, ...]
    path: str
    line: int

    @classmethod
    def from_raw(cls, raw: Any, path: str, stem: str) -> OnDemandView:
        f = _Fields(raw, path, "on_demand_view")
        name = f.name(default=stem)
        what = f"on-demand view '{name}'"
        request = read_list(f.get("request", list, []), "request", path, RequestField.from_raw,
                            f.line_of("request"))
        inputs: list[FeatureRef] = []
        for item in f.get("inputs", list, []):
            ref = None
            if isinstance(item, str):
                try:
                    ref = FeatureRef.parse(item, f.line_of("inputs"))
                except ValueError:
                    pass
            if ref is None or ref.feature is None:
                raise f.error("inputs", f"{what}: inputs are 'view.feature' strings, found "
                              f"{item!r}", hint="inputs: [card_activity.avg_7d]")
            inputs.append(ref)
        features = read_list(f.require("features", list), "features", path,
                             OnDemandFeature.from_raw, f.line_of("features"))
        if not features:
            raise f.error("features", f"{what}: declare at least one feature")
        seen: dict[str, int] = {}
        items: list[RequestField | OnDemandFeature] = [*request, *features]
        for item in items:
            if item.name in seen:
                raise DefinitionError(path, f"{what}: '{item.name}' is declared twice (first "
                                      f"on line {seen[item.name]})", line=item.line)
            seen[item.name] = item.line
        view = cls(name, tuple(request), tuple(inputs), tuple(features),
                   f.get("description", str, ""), f.get("owner", str, ""), f.names("tags"),
                   path, f.line)
        f.done()
        return view

    def feature(self, name: str) -> OnDemandFeature | None:
        return next((x for x in self.features if x.name == name), None)
