"""Online retrieval: the one ``get_online_features`` path behind the Python API, CLI and HTTP.

Serving needs the project's definitions (names, entities, features, types) and the online
store, not the offline engine or its data: join-key kinds come from the view's metadata, which
``fsql sync`` writes next to the values.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgpack

from fsql.definitions import Feature, FeatureRef, FeatureView
from fsql.errors import OnlineStoreError, RequestError, StaleDefinitionError
from fsql.loader import ProjectSpec
from fsql.online.keys import HEADER, INT_KEY, NO_STAMP, STR_KEY, ViewLayout, converter, iso_utc
from fsql.online.redis_store import RedisStore

PRESENT, MISSING, EXPIRED = "PRESENT", "MISSING", "EXPIRED"
DEFAULT_MAX_ENTITIES = 1000

# Key values of these exact types need no per-value check (the common case: plain ints or str)
_EXACT_KEY_TYPES: dict[str, set[type]] = {INT_KEY: {int}, STR_KEY: {str}}
# Values of these exact types are their own JSON form
_JSON_NATIVE = {int, float, str, bool, type(None)}
_OFFSET = -NO_STAMP  # a header's event time is its number minus this


@dataclass(frozen=True, slots=True)
class _ViewRequest:
    view: FeatureView
    keys: tuple[str, ...]
    features: tuple[Feature, ...]  # requested, in request order
    positions: tuple[int, ...]  # index of each requested feature in the stored vector
    names: tuple[str, ...]  # output column names
    ttl_micros: int | None = None
    converters: tuple[Callable[[Any], Any] | None, ...] = ()  # per requested feature


@dataclass
class OnlineResult:
    """Feature values for a list of entities: columns of equal length.

    ``values[name][i]`` is the value of output column ``name`` for entity row ``i`` (``None``
    when missing or expired); ``statuses`` and ``event_timestamps`` have the same shape for the
    feature columns.
    """

    entities: dict[str, list[Any]]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]] = field(default_factory=dict)
    event_timestamps: dict[str, list[int | None]] = field(default_factory=dict)
    # columns made by OnlineService.get that hold only JSON-native values (numbers, strings,
    # booleans, None), by identity: ``to_json`` passes them on without a look at each value
    _native: dict[str, list[Any]] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)

    def to_dict(self) -> dict[str, list[Any]]:
        return {**self.entities, **self.values}

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_dict())

    def to_json(self) -> dict[str, Any]:
        """Feast's response shape: ``metadata.feature_names`` (entity columns, then features)
        and per column ``values``, ``statuses`` and ISO ``event_timestamps``."""
        results: list[dict[str, Any]] = [
            {"values": values, "statuses": [PRESENT] * len(values),
             "event_timestamps": [None] * len(values)} for values in self.entities.values()]
        last_stamps: list[int | None] | None = None
        last_iso: list[str | None] = []
        native = self._native
        for name, values in self.values.items():
            stamps = self.event_timestamps[name]
            if stamps != last_stamps:  # the features of one view share their timestamps
                last_stamps, last_iso = stamps, list(map(_ISO.__getitem__, stamps))
            results.append({"values": values if native.get(name) is values
                            else _json_values(values),
                            "statuses": self.statuses[name], "event_timestamps": last_iso})
        return {"metadata": {"feature_names": [*self.entities, *self.values]},
                "results": results}


def _json_values(values: list[Any]) -> list[Any]:
    if set(map(type, values)) <= _JSON_NATIVE:
        return values[:]
    return [_json_value(v) for v in values]


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class _IsoCache(dict[int | None, str | None]):
    """Event timestamps (microseconds) -> ISO text, remembered: values of one entity keep their
    event time between syncs, and many entities share one. Bounded (cleared when full)."""

    LIMIT = 100_000

    def __missing__(self, micros: int | None) -> str | None:
        text = None if micros is None else iso_utc(micros)
        if len(self) >= self.LIMIT:
            self.clear()
        self[micros] = text
        return text


_ISO = _IsoCache()


@dataclass(slots=True)
class _Plan:
    """A resolved request shape (cached), and what it needs per request once the views' key
    kinds are known (``bind``)."""

    requests: list[_ViewRequest]
    key_columns: list[str]
    version: int = -1  # the OnlineService layouts version the fields below were made for
    layouts: tuple[ViewLayout, ...] = ()  # per request
    owner: dict[str, ViewLayout] = field(default_factory=dict)  # key column -> its layout
    exact: tuple[tuple[str, set[type]], ...] = ()  # key column -> types needing no check
    # views keyed alike (the same entity) share their key text: one (layout, key columns) per
    # distinct key, and the index of each request's
    keyings: tuple[tuple[ViewLayout, tuple[str, ...]], ...] = ()
    keying: tuple[int, ...] = ()


class OnlineService:
    """Resolves feature requests against the project and reads them from the store."""

    PLAN_CACHE = 1024  # request shapes remembered (cleared when full)

    def __init__(self, spec: ProjectSpec, store: RedisStore,
                 clock: Callable[[], float] | None = None,
                 max_entities: int = DEFAULT_MAX_ENTITIES) -> None:
        self.spec = spec
        self.store = store
        self.clock = clock or store.clock
        self.max_entities = max_entities
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._layouts: dict[str, ViewLayout] = {}
        self._version = 0  # bumped whenever ``_layouts`` changes
        # view -> (layout, meta key_kinds, meta schema) of the last check that passed, and the
        # layout it returned: the same meta needs no new check (json + sha256) per request
        self._verified: dict[str, tuple[ViewLayout, str, str | None, ViewLayout]] = {}

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, features: str | Sequence[str]) -> tuple[list[_ViewRequest], list[str]]:
        """Feature names (``view``/``view.feature``) or a training set name -> per-view reads
        and the entity key columns the request needs. Cached per request shape."""
        plan = self._plan(features)
        return plan.requests, plan.key_columns

    def _plan(self, features: str | Sequence[str]) -> _Plan:
        cache_key = (features,) if isinstance(features, str) else tuple(features)
        cached = self._plans.get(cache_key)
        if cached is not None:
            return cached
        naming = "plain"
        if isinstance(features, str):
            ts = self.spec.training_sets.get(features)
            if ts is None:
                raise RequestError(f"'{features}' is not a training set (feature service); "
                                   "pass a list of 'view' or 'view.feature' names")
            refs, naming = list(ts.features), ts.naming
        else:
            if not features:
                raise RequestError("request at least one feature")
            try:
                refs = [FeatureRef.parse(f) for f in features]
            except ValueError as err:
                raise RequestError(str(err)) from None
        wanted: dict[str, list[Feature]] = {}
        for ref in refs:
            view = self.spec.views.get(ref.view)
            if view is None:
                raise RequestError(f"unknown feature view '{ref.view}'")
            if not view.online:
                raise RequestError(f"feature view '{ref.view}' is not online (online: true)")
            chosen = [view.feature(ref.feature)] if ref.feature else list(view.features)
            if chosen[0] is None:
                raise RequestError(f"feature view '{ref.view}' has no feature '{ref.feature}'")
            bucket = wanted.setdefault(view.name, [])
            bucket += [f for f in chosen if f is not None and f not in bucket]
        requests: list[_ViewRequest] = []
        key_columns: list[str] = []
        seen: set[str] = set()
        for name, feats in wanted.items():
            view = self.spec.views[name]
            keys = tuple(k for e in view.entities for k in self.spec.entities[e].join_keys)
            key_columns += [k for k in keys if k not in key_columns]
            names = tuple(f.name if naming == "plain" else f"{name}__{f.name}" for f in feats)
            for out in names:
                if out in seen:
                    raise RequestError(f"feature name '{out}' is requested from two views; "
                                       "ask for view.feature names from one view or use a "
                                       "training set with naming: prefixed")
                seen.add(out)
            requests.append(_ViewRequest(
                view, keys, tuple(feats), tuple(view.features.index(f) for f in feats), names,
                view.ttl.seconds * 1_000_000 if view.ttl else None,
                tuple(converter(f) for f in feats)))
        if len(self._plans) >= self.PLAN_CACHE:
            self._plans.clear()
        plan = self._plans[cache_key] = _Plan(requests, key_columns)
        return plan

    def _bind(self, plan: _Plan) -> _Plan:
        """Learn the key kinds of the plan's views (first use only) and what follows from them
        for the plan: redone only when a view's layout changed."""
        if plan.version == self._version:
            return plan
        self._learn(plan.requests)
        version = self._version
        plan.layouts = tuple(self._layouts[req.view.name] for req in plan.requests)
        owner: dict[str, ViewLayout] = {}  # a key shared by views follows the first view
        for req, layout in zip(plan.requests, plan.layouts, strict=True):
            for k in req.keys:
                owner.setdefault(k, layout)
        plan.owner = owner
        distinct: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        keyings: list[tuple[ViewLayout, tuple[str, ...]]] = []
        keying: list[int] = []
        for req, layout in zip(plan.requests, plan.layouts, strict=True):
            index = distinct.setdefault((req.keys, layout.key_kinds), len(keyings))
            if index == len(keyings):
                keyings.append((layout, req.keys))
            keying.append(index)
        plan.keyings, plan.keying = tuple(keyings), tuple(keying)
        plan.exact = tuple(
            (k, _EXACT_KEY_TYPES[owner[k].key_kinds[owner[k].key_columns.index(k)]])
            for k in plan.key_columns)
        plan.version = version
        return plan

    def _learn(self, requests: list[_ViewRequest]) -> None:
        """Read the metadata of views not seen yet (their key kinds): one extra round trip on
        the first request for a view, none after."""
        unknown = [r for r in requests if r.view.name not in self._layouts]
        if not unknown:
            return
        placeholders = [ViewLayout(self.store.config.namespace, r.view.name, r.keys,
                                   tuple(STR_KEY for _ in r.keys), r.view.features)
                        for r in unknown]
        for req, layout, (meta, _) in zip(unknown, placeholders,
                                          self.store.read([(p, []) for p in placeholders]),
                                          strict=True):
            self._check(req, layout, meta)

    # -- reading -----------------------------------------------------------------------------
    def get(self, features: str | Sequence[str], entities: Mapping[str, Sequence[Any]],
            from_text: bool = False) -> OnlineResult:
        """Values for ``entities`` given as columns: ``{"customer_id": [1, 2]}``.

        ``from_text`` parses key values given as text (the CLI). One store round trip.
        """
        plan = self._plan(features)
        columns = _entity_columns(entities, plan.key_columns, self.max_entities)
        plan = self._bind(plan)
        for k, exact in plan.exact:
            if not set(map(type, columns[k])) <= exact:
                columns = self._coerce(plan, columns, from_text)
                break
        texts = [layout.key_suffixes([columns[k] for k in keys]) for layout, keys in plan.keyings]
        replies = self.store.read_keys([(layout, texts[i]) for layout, i in
                                        zip(plan.layouts, plan.keying, strict=True)])
        now = int(self.clock() * 1_000_000)
        result = OnlineResult(columns, {})
        for req, layout, (meta, raws) in zip(plan.requests, plan.layouts, replies, strict=True):
            if self._check(req, layout, meta) is not layout:
                raise OnlineStoreError(f"view '{req.view.name}' changed its key types during "
                                       "the request; retry")
            _decode(req, raws, now, result)
        return result

    @staticmethod
    def _coerce(plan: _Plan, columns: dict[str, list[Any]], from_text: bool
                ) -> dict[str, list[Any]]:
        """Check (or with ``from_text``, parse) every key value, row by row (so the first bad
        row is the one reported)."""
        owner = plan.owner
        count = len(columns[plan.key_columns[0]])
        rows = [{k: owner[k].coerce_key(k, columns[k][i], from_text) for k in plan.key_columns}
                for i in range(count)]
        return {k: [row[k] for row in rows] for k in plan.key_columns}

    def _check(self, req: _ViewRequest, layout: ViewLayout, meta: dict[str, str]) -> ViewLayout:
        """Fail on views never synced or synced by another definition; learn key kinds."""
        if "generation" not in meta:
            raise OnlineStoreError(f"feature view '{req.view.name}' has no online data yet; "
                                   "run: fsql sync")
        kinds_text, schema = meta.get("key_kinds", "[]"), meta.get("schema")
        verified = self._verified.get(req.view.name)
        if (verified is not None and verified[0] is layout and verified[1] == kinds_text
                and verified[2] == schema):
            return verified[3]  # the same layout and meta as a check that passed
        kinds = tuple(json.loads(kinds_text))
        checked = layout
        if kinds != layout.key_kinds:
            checked = ViewLayout(layout.namespace, layout.view, layout.key_columns, kinds,
                                 layout.features)
        if schema != checked.schema_fingerprint:
            self._layouts.pop(req.view.name, None)
            self._verified.pop(req.view.name, None)
            self._version += 1
            raise StaleDefinitionError(
                f"the online data of view '{req.view.name}' was written by a different "
                "definition (features, types or keys changed since the last sync); run "
                "fsql sync to refresh it before serving")
        if self._layouts.get(req.view.name) is not checked:
            self._layouts[req.view.name] = checked
            self._version += 1
        self._verified[req.view.name] = (layout, kinds_text, schema, checked)
        return checked


def _decode(req: _ViewRequest, raws: list[bytes | None], now: int, result: OnlineResult) -> None:
    """Raw stored values of one view -> the requested feature columns, statuses and event
    times (column-wise: one pass per step, no per-value Python objects besides the values)."""
    unpack = msgpack.unpackb
    empty = [None] * len(req.view.features)
    vectors: list[list[Any]] = [empty if raw is None else unpack(raw[HEADER:]) for raw in raws]
    events: list[int | None] = [None if raw is None else int(raw[:20]) - _OFFSET
                                for raw in raws]
    if NO_STAMP in events:  # a value written without event time (never by fsql sync)
        events = [None if e == NO_STAMP else e for e in events]
    statuses = [MISSING if raw is None else PRESENT for raw in raws]
    if req.ttl_micros is not None:
        cutoff = now - req.ttl_micros  # expired: now > event + ttl
        for i, event in enumerate(events):
            if event is not None and event < cutoff:
                vectors[i], statuses[i] = empty, EXPIRED
    stored = list(zip(*vectors, strict=True)) if vectors else [() for _ in empty]
    values, status_columns, stamps = result.values, result.statuses, result.event_timestamps
    native = result._native
    for name, pos, convert in zip(req.names, req.positions, req.converters, strict=True):
        column = list(stored[pos])
        if convert is None:
            native[name] = column  # msgpack gave numbers, strings, booleans or None
        else:
            column = [None if v is None else convert(v) for v in column]
        values[name] = column
        status_columns[name] = statuses[:]
        stamps[name] = events[:]


def _entity_columns(entities: Mapping[str, Sequence[Any]], key_columns: list[str],
                    max_entities: int) -> dict[str, list[Any]]:
    """Validated copies of the requested key columns."""
    if type(entities) is not dict and not isinstance(entities, Mapping):
        raise RequestError("entities must map each join key to a list of values")
    if len(entities) != len(key_columns) or any(k not in entities for k in key_columns):
        missing = [k for k in key_columns if k not in entities]
        if missing:
            raise RequestError(f"missing entity key column(s): {', '.join(missing)} "
                               f"(this request needs: {', '.join(key_columns)})")
        extra = [k for k in entities if k not in key_columns]
        if extra:
            raise RequestError(f"unexpected entity key column(s): {', '.join(extra)} "
                               f"(this request needs: {', '.join(key_columns)})")
    columns = {k: entities[k] for k in key_columns}
    for name, values in columns.items():
        if type(values) is not list and (isinstance(values, str | bytes)
                                         or not isinstance(values, Sequence)):
            raise RequestError(f"entity key '{name}' must be a list of values")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise RequestError("entity key columns must have the same length")
    count = lengths.pop() if lengths else 0
    if count > max_entities:
        raise RequestError(f"too many entities: {count} (limit {max_entities} per request)")
    return {k: list(values) for k, values in columns.items()}
