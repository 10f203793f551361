"""Online retrieval: the one ``get_online_features`` path behind the Python API, CLI and HTTP.

Serving needs the project's definitions (names, entities, features, types) and the online
store, not the offline engine or its data: join-key kinds and where each feature sits in the
stored vectors come from the view's metadata, which ``fsql sync`` writes next to the values (so
a sync that adds a feature never breaks a running reader).

Every value has a status: PRESENT, MISSING (no value), EXPIRED (older than the ttl) or CORRUPT
(a stored value that cannot be decoded); the value is None unless PRESENT. In JSON, NaN and
infinities are the strings "NaN", "Infinity" and "-Infinity" (protobuf's JSON mapping).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import reprlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from fsql.definitions import Feature, FeatureRef, FeatureView, repeated
from fsql.errors import (
    OnDemandError,
    OnlineStoreError,
    RequestError,
    did_you_mean,
    known_names,
)
from fsql.jsonvalues import json_float
from fsql.loader import ProjectSpec
from fsql.online.base import OnlineStore
from fsql.online.keys import INT_KEY, STR_KEY, ViewLayout, converter, iso_utc, stored_types
from fsql.online.tiles import window_values
from fsql.online.vectors import StoredView, stored_view, unpack
from fsql.paths import TargetPaths
from fsql.secrets import redact

PRESENT, MISSING, EXPIRED, CORRUPT = "PRESENT", "MISSING", "EXPIRED", "CORRUPT"
DEFAULT_MAX_ENTITIES = 1000
DEFAULT_MAX_FEATURES = 1000
PIN_RECHECK = 1.0  # seconds between looks at a served training set's build record
_FLOAT_TYPES = frozenset({float, int, type(None)})

# Key values of these exact types need no per-value check (the common case: plain ints or str)
_EXACT_KEY_TYPES: dict[str, set[type]] = {INT_KEY: {int}, STR_KEY: {str}}
#: a training set's response status when an online view's definition is not the one it was
#: built with (the model may be served values computed another way than it was trained on)
DEFINITION_CHANGED = "DEFINITION_CHANGED"
# Values of these exact types are their own JSON form
_JSON_NATIVE = {int, float, str, bool, type(None)}


@dataclass(frozen=True, slots=True)
class _ViewRequest:
    view: FeatureView
    keys: tuple[str, ...]
    features: tuple[Feature, ...]  # requested, in request order
    names: tuple[str, ...]  # output column names
    ttl_micros: int | None = None
    converters: tuple[Callable[[Any], Any] | None, ...] = ()  # per requested feature
    allowed: tuple[frozenset[type], ...] = ()  # per requested feature: its stored value types


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
    corrupt: int = 0  # values that could not be decoded (status CORRUPT, value None)
    #: for a training set: its online views whose definition differs from the one it was
    #: built with (``DEFINITION_CHANGED``); empty when they agree or it was never built
    definition_changed: list[str] = field(default_factory=list)
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
        metadata: dict[str, Any] = {"feature_names": [*self.entities, *self.values]}
        if self.definition_changed:
            metadata.update(status=DEFINITION_CHANGED, definition_changed=self.definition_changed)
        return {"metadata": metadata, "results": results}


def _json_values(values: list[Any]) -> list[Any]:
    types = set(map(type, values))
    if types <= _JSON_NATIVE and (float not in types or _finite(values)):
        return values[:]
    return [_json_value(v) for v in values]


def _finite(values: list[Any]) -> bool:
    """No NaN or infinity among the floats of ``values`` (numbers or None)."""
    return all(v is None or math.isfinite(v) for v in values)


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return json_float(value)
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
    #: on-demand features, computed after the read (``fsql.ondemand``)
    on_demand: tuple[_OnDemandRequest, ...] = ()
    #: columns read only as on-demand inputs, dropped from the result
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _OnDemandRequest:
    """One on-demand view's part of a request: its bound view, the requested features with
    their output names, and the result column each input name reads."""

    bound: Any  # ondemand.BoundView
    features: tuple[tuple[str, Any], ...]  # (output name, ondemand.BoundFeature)
    inputs: tuple[tuple[str, str], ...]  # (input name, result column)


class OnlineService:
    """Resolves feature requests against the project and reads them from the store.

    Not thread-safe: one thread (``fsql serve``'s event loop) calls ``get`` and ``use``; only
    ``health`` may run on another thread.
    """

    PLAN_CACHE = 1024  # request shapes remembered, least recently used dropped first...
    PLAN_CACHE_FEATURES = 100_000  # ...and feature names held by them in total

    def __init__(self, spec: ProjectSpec, store: OnlineStore, paths: TargetPaths,
                 clock: Callable[[], float] | None = None,
                 max_entities: int = DEFAULT_MAX_ENTITIES,
                 max_features: int = DEFAULT_MAX_FEATURES) -> None:
        self.store = store
        self.paths = paths  # where the target's training sets and build records are
        self.clock = clock or store.clock
        self.max_entities = max_entities
        self.max_features = max_features
        self.use(spec)

    def use(self, spec: ProjectSpec) -> None:
        """Serve the definitions ``spec`` from now on (a reload): forget what was resolved
        from the previous ones."""
        self.spec = spec
        self._plans: OrderedDict[tuple[str, ...], _Plan] = OrderedDict()
        self._plan_features = 0  # feature names held by the cached plans' keys
        self._layouts: dict[str, ViewLayout] = {}
        self._version = 0  # bumped whenever ``_layouts`` changes
        # view -> (layout, meta key_kinds/schema/features) of the last check that passed, and
        # what it found: the same meta needs no new check (json + sha256) per request
        self._verified: dict[str, tuple[ViewLayout, tuple[str | None, ...], StoredView]] = {}
        # training set -> (its build record, the record's mtime and size when read, the view
        # hashes it was built with)
        # training set -> (its output, its build record's (mtime, size), the record's hashes,
        # when last stat'ed)
        self._pins: dict[str, tuple[Path, tuple[int, int] | None, dict[str, str] | None,
                                    float]] = {}

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, features: str | Sequence[str]) -> tuple[list[_ViewRequest], list[str]]:
        """Feature names (``view``/``view.feature``) or a training set name -> per-view reads
        and the entity key columns the request needs. Cached per request shape."""
        plan = self._plan(features)
        return plan.requests, plan.key_columns

    def _plan(self, features: str | Sequence[str]) -> _Plan:
        if not isinstance(features, str) and len(features) > self.max_features:
            raise RequestError(f"too many features: {len(features)} (limit "
                               f"{self.max_features} per request)")
        cache_key = (features,) if isinstance(features, str) else tuple(features)
        cached = self._plans.get(cache_key)
        if cached is not None:
            self._plans.move_to_end(cache_key)
            return cached
        plan = self._new_plan(features)
        self._plans[cache_key] = plan
        self._plan_features += len(cache_key)
        while (len(self._plans) > self.PLAN_CACHE
               or self._plan_features > self.PLAN_CACHE_FEATURES):
            dropped, _ = self._plans.popitem(last=False)
            self._plan_features -= len(dropped)
        return plan

    def _new_plan(self, features: str | Sequence[str]) -> _Plan:
        naming = "plain"
        if isinstance(features, str):
            ts = self.spec.training_sets.get(features)
            if ts is None:
                raise RequestError(f"{_shown(features)} is not a training set (feature "
                                   f"service); {did_you_mean(features, self.spec.training_sets)}"
                                   "pass a list of 'view' or 'view.feature' names")
            refs, naming = list(ts.features), ts.naming
        else:
            if not features:
                raise RequestError("request at least one feature")
            try:
                refs = [FeatureRef.parse(f) for f in features]
            except ValueError as err:
                raise RequestError(str(err)) from None
            twice = repeated(refs)
            if twice is not None:
                raise RequestError(f"{twice}; ask for each feature once")
        wanted: dict[str, list[Feature]] = {}
        demanded: dict[str, list[str]] = {}
        for ref in refs:
            odv = self.spec.on_demand.get(ref.view)
            if odv is not None and ref.view not in self.spec.views:
                asked = [ref.feature] if ref.feature else [f.name for f in odv.features]
                if odv.feature(asked[0] or "") is None:
                    raise RequestError(f"on-demand view '{ref.view}' has no feature "
                                       f"{_shown(ref.feature or '')}; " + known_names(
                                           ref.feature or "", [f.name for f in odv.features]))
                picked = demanded.setdefault(odv.name, [])
                picked += [n for n in asked if n is not None and n not in picked]
                continue
            view = self.spec.views.get(ref.view)
            if view is None:
                near = did_you_mean(ref.view, [*self.spec.views, *self.spec.on_demand, *(
                    self.spec.training_sets if ref.feature is None else ())])
                raise RequestError(f"unknown feature view {_shown(ref.view)}; {near}known: "
                                   + ", ".join(sorted([*self.spec.views, *self.spec.on_demand])))
            if not view.online:
                raise RequestError(f"feature view '{ref.view}' is not online (online: true)")
            chosen = [view.feature(ref.feature)] if ref.feature else list(view.features)
            if chosen[0] is None:
                raise RequestError(f"feature view '{ref.view}' has no feature "
                                   f"{_shown(ref.feature or '')}; " + known_names(
                                       ref.feature or "", [f.name for f in view.features]))
            bucket = wanted.setdefault(view.name, [])
            bucket += [f for f in chosen if f is not None and f not in bucket]
        hidden: dict[str, list[Feature]] = {}
        for odv_name in demanded:
            for ref in self.spec.on_demand[odv_name].inputs:
                view = self.spec.views[ref.view]
                if not view.online:
                    raise RequestError(f"feature view '{ref.view}', an input of on-demand view "
                                       f"'{odv_name}', is not online (online: true)")
                feature = view.feature(ref.feature or "")
                if feature is not None and feature not in wanted.get(ref.view, []):
                    bucket = hidden.setdefault(ref.view, [])
                    bucket += [feature] if feature not in bucket else []
        columns_of: dict[tuple[str, str], str] = {}  # (view, feature) -> result column
        requests: list[_ViewRequest] = []
        key_columns: list[str] = []
        seen: set[str] = set()
        for name in [*wanted, *(v for v in hidden if v not in wanted)]:
            shown = wanted.get(name, [])
            feats = [*shown, *hidden.get(name, [])]
            view = self.spec.views[name]
            keys = tuple(k for e in view.entities for k in self.spec.entities[e].join_keys)
            key_columns += [k for k in keys if k not in key_columns]
            names = tuple(f.name if naming == "plain" else f"{name}__{f.name}" for f in shown)
            names += tuple(_input_column(name, f.name) for f in hidden.get(name, []))
            columns_of.update({(name, f.name): n for f, n in zip(feats, names, strict=True)})
            for out in names:
                if out in seen:
                    raise RequestError(f"feature name '{out}' is requested from two views; "
                                       "ask for view.feature names from one view or use a "
                                       "training set with naming: prefixed")
                seen.add(out)
            requests.append(_ViewRequest(
                view, keys, tuple(feats), names,
                view.ttl.seconds * 1_000_000 if view.ttl else None,
                tuple(converter(f) for f in feats), tuple(stored_types(f) for f in feats)))
        on_demand = []
        for odv_name, chosen_names in demanded.items():
            bound = self.spec.on_demand_bound[odv_name]
            outputs = []
            for feature_name in chosen_names:
                out = feature_name if naming == "plain" else f"{odv_name}__{feature_name}"
                if out in seen:
                    raise RequestError(f"feature name '{out}' is requested twice; ask for "
                                       "view.feature names from one view or use a training "
                                       "set with naming: prefixed")
                seen.add(out)
                outputs.append((out, bound.feature(feature_name)))
            on_demand.append(_OnDemandRequest(bound, tuple(outputs), tuple(
                (n, columns_of[(ref.view, ref.feature)]) for n, ref in bound.inputs.items())))
        return _Plan(requests, key_columns, on_demand=tuple(on_demand),
                     hidden=tuple(n for v, fs in hidden.items() for n in
                                  (_input_column(v, f.name) for f in fs)))

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
        placeholders = [_placeholder(self.store.config.namespace, r.view, r.keys)
                        for r in unknown]
        for req, layout, (meta, _) in zip(unknown, placeholders,
                                          self.store.read([(p, []) for p in placeholders]),
                                          strict=True):
            self._check(req, layout, meta)

    # -- reading -----------------------------------------------------------------------------
    def get(self, features: str | Sequence[str], entities: Mapping[str, Sequence[Any]],
            from_text: bool = False,
            request_data: Mapping[str, Sequence[Any]] | None = None) -> OnlineResult:
        """Values for ``entities`` given as columns: ``{"customer_id": [1, 2]}``.

        ``request_data``: the request fields of the on-demand features asked for, as columns
        of the same length as the entity columns (``{"amount": [12.5, 3.0]}``).
        ``from_text`` parses key values and request data given as text (the CLI). One store
        round trip.
        """
        plan = self._plan(features)
        if plan.key_columns:
            columns = _entity_columns(entities, plan.key_columns, self.max_entities)
        else:
            columns = {}
        request = _request_columns(plan, request_data, columns, from_text)
        plan = self._bind(plan)
        for k, exact in plan.exact:
            if not set(map(type, columns[k])) <= exact:
                columns = self._coerce(plan, columns, from_text)
                break
        texts = [layout.key_suffixes([columns[k] for k in keys]) for layout, keys in plan.keyings]
        replies = self.store.read_keys([(layout, texts[i]) for layout, i in
                                        zip(plan.layouts, plan.keying, strict=True)])
        now = round(self.clock() * 1_000_000)
        result = OnlineResult(columns, {})
        pin = self._pin(features) if isinstance(features, str) else {}
        for req, layout, (meta, raws) in zip(plan.requests, plan.layouts, replies, strict=True):
            if pin != {}:
                built = pin.get(f"view:{req.view.name}") if pin is not None else ""
                if built is not None and meta.get("definition", built) != built:
                    result.definition_changed.append(req.view.name)
            stored = self._check(req, layout, meta)
            if stored.layout is not layout:
                raise OnlineStoreError(f"view '{req.view.name}' changed its key types during "
                                       "the request; retry")
            decode = _decode_windows if req.view.aggregations else _decode
            decode(req, stored.positions(req.view.name, req.features), stored.width, raws,
                   now, result)
        if plan.on_demand:
            _evaluate(plan, request, result)
        return result

    def _pin(self, training_set: str) -> dict[str, str] | None:
        """The definition hashes ``training_set`` was built with (its build record's
        ``definitions``; empty when it was never built, None when the record cannot be read:
        then every view counts as changed). Re-read only when the record's file changes, which
        is looked at (one ``stat``) at most every ``PIN_RECHECK`` seconds."""
        cached = self._pins.get(training_set)
        now = time.monotonic()
        if cached is not None and now - cached[3] < PIN_RECHECK:
            return cached[2]
        from fsql.compile import build_record, built_definitions

        output = (self.paths.training_set(self.spec.training_sets[training_set])
                  if cached is None else cached[0])
        try:
            stat = os.stat(build_record(output))
            signature: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            signature = None
        if cached is not None and cached[1] == signature:
            self._pins[training_set] = (*cached[:3], now)
            return cached[2]
        hashes = built_definitions(output) if signature is not None else {}
        self._pins[training_set] = (output, signature, hashes, now)
        return hashes

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

    def _check(self, req: _ViewRequest, layout: ViewLayout, meta: dict[str, str]
               ) -> StoredView:
        """``stored_view``, remembered per view while its meta stays the same; keeps the
        learnt key kinds (``_layouts``) in step."""
        name = req.view.name
        texts = (meta.get("key_kinds"), meta.get("schema"), meta.get("features"))
        verified = self._verified.get(name)
        if (verified is not None and verified[0] is layout and verified[1] == texts
                and "generation" in meta):
            return verified[2]  # the same layout and meta as a check that passed
        try:
            stored = stored_view(req.view, layout, meta)
        except OnlineStoreError:
            if self._layouts.pop(name, None) is not None:
                self._version += 1
            self._verified.pop(name, None)
            raise
        if self._layouts.get(name) is not stored.layout:
            self._layouts[name] = stored.layout
            self._version += 1
        self._verified[name] = (layout, texts, stored)
        return stored

    def close(self) -> None:
        """Release the store: its connections and, for the embedded store, the redis-server
        started for it (``OnlineStore.close``)."""
        self.store.close()

    # -- health ------------------------------------------------------------------------------
    def health(self, timeout: float) -> tuple[bool, dict[str, Any]]:
        """Whether this service can serve, and why not: a PING on a connection of its own
        whose every operation times out after ``timeout`` seconds (so a hung store answers
        "unavailable" in bounded time), then each online view's metadata checked against the
        loaded definitions. Serving is possible when the store answers and at least one online
        view is readable ("degraded" names the views that are not). Touches no state of
        ``get``, so it may run on another thread."""
        spec = self.spec  # one snapshot: a reload may swap it meanwhile
        views, layouts = self._online_layouts(spec)
        try:
            metas = self.store.read_metas(layouts, OnlineStore.READ_META, timeout)
        except OnlineStoreError as err:
            return False, {"status": "unavailable", "error": redact(str(err))}
        problems: dict[str, str] = {}
        for view, layout, meta in zip(views, layouts, metas, strict=True):
            try:
                stored_view(view, layout, meta).positions(view.name, view.features)
            except OnlineStoreError as err:
                problems[view.name] = str(err)
        if problems and len(problems) == len(views):
            return False, {"status": "unavailable", "views": problems}
        return True, ({"status": "degraded", "views": problems} if problems
                      else {"status": "ok"})

    SYNC_META = ("synced_at", "last_entities", "online_entities")

    def sync_state(self, timeout: float) -> dict[str, dict[str, str]] | None:
        """Each online view's sync meta (``SYNC_META``, as ``fsql sync`` last wrote it), read
        like ``health`` in bounded time; None when the store does not answer."""
        views, layouts = self._online_layouts(self.spec)
        try:
            metas = self.store.read_metas(layouts, self.SYNC_META, timeout)
        except OnlineStoreError:
            return None
        return {view.name: meta for view, meta in zip(views, metas, strict=True)}

    def _online_layouts(self, spec: ProjectSpec) -> tuple[list[FeatureView], list[ViewLayout]]:
        views = sorted((v for v in spec.views.values() if v.online), key=lambda v: v.name)
        return views, [_placeholder(self.store.config.namespace, v, tuple(
            k for e in v.entities for k in spec.entities[e].join_keys)) for v in views]


def _input_column(view: str, feature: str) -> str:
    return f"__fsql_in__{view}__{feature}"


def _request_columns(plan: _Plan, request_data: Mapping[str, Sequence[Any]] | None,
                     entities: dict[str, list[Any]], from_text: bool
                     ) -> dict[str, list[Any]]:
    """The request fields the plan's on-demand features need, checked (or, ``from_text``,
    parsed) against the fields' types: one value per entity row."""
    from fsql.ondemand import request_value

    data = {} if request_data is None else request_data
    if not isinstance(data, Mapping):
        raise RequestError("request_data must map each request field to a list of values")
    fields = {f.name: f for od in plan.on_demand for f in od.bound.view.request}
    extra = [k for k in data if k not in fields]
    if extra:
        raise RequestError(f"unexpected request field(s): {', '.join(map(_shown, extra))}; "
                           f"{did_you_mean(str(extra[0]), fields)}"
                           f"this request takes: {', '.join(fields) or 'none'}")
    rows = len(next(iter(entities.values()))) if entities else None
    out: dict[str, list[Any]] = {}
    for name, field_ in fields.items():
        if name not in data:
            views = [od.bound.view.name for od in plan.on_demand
                     if any(f.name == name for f in od.bound.view.request)]
            raise RequestError(f"missing request field '{name}' ({field_.dtype.name}), needed "
                               f"by on-demand view {', '.join(views)}")
        values = data[name]
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise RequestError(f"request field '{name}' must be a list of values, one per "
                               "entity row")
        if rows is not None and len(values) != rows:
            raise RequestError(f"request field '{name}' has {len(values)} value(s) for {rows} "
                               "entity row(s); give one per row")
        rows = len(values)
        try:
            out[name] = [request_value(field_.dtype.name, v, from_text) for v in values]
        except (ValueError, OverflowError) as err:
            raise RequestError(f"request field '{name}' ({field_.dtype.name}): {err}") from None
    return out


def _evaluate(plan: _Plan, request: dict[str, list[Any]], result: OnlineResult) -> None:
    """Compute the plan's on-demand features row by row from the read inputs and the request
    data; their status is PRESENT (the value may be None: the expression gave NULL)."""
    from fsql.ondemand import EvaluationError

    values = result.values
    rows = len(next(iter(request.values()))) if request else (
        len(next(iter(result.entities.values()))) if result.entities else 0)
    for od in plan.on_demand:
        named = {name: values[column] for name, column in od.inputs}
        named.update(request)
        for out, bound in od.features:
            try:
                column = bound.batch([named[n] for n in bound.uses], rows)
            except EvaluationError as err:
                raise OnDemandError(f"on-demand feature {od.bound.view.name}."
                                    f"{bound.feature.name}: {err}") from None
            values[out] = column
            result.statuses[out] = [PRESENT] * rows
            result.event_timestamps[out] = [None] * rows
    for column_name in plan.hidden:
        for table in (values, result.statuses, result.event_timestamps, result._native):
            table.pop(column_name, None)


def _placeholder(namespace: str, view: FeatureView, keys: tuple[str, ...]) -> ViewLayout:
    """A layout good enough to read a view's meta before its key kinds are known."""
    return ViewLayout(namespace, view.name, keys, tuple(STR_KEY for _ in keys), view.features)




def _shown(text: str) -> str:
    """User text quoted for a message, shortened when long."""
    return reprlib.repr(text)


def _decode(req: _ViewRequest, positions: tuple[int, ...], width: int,
            raws: list[bytes | None], now: int, result: OnlineResult) -> None:
    """Raw stored values of one view -> the requested feature columns, statuses and event
    times (column-wise: one pass per step, no per-value Python objects besides the values).
    A value of the wrong type, or one its converter refuses, is CORRUPT (None)."""
    vectors, events, corrupt = unpack(raws, width)
    statuses = [MISSING if raw is None else PRESENT for raw in raws]
    for i in corrupt:
        statuses[i] = CORRUPT
    if req.ttl_micros is not None:
        cutoff = now - req.ttl_micros  # expired: now > event + ttl
        empty = [None] * width
        for i, event in enumerate(events):
            if event is not None and event < cutoff:
                vectors[i], statuses[i] = empty, EXPIRED
    stored = list(zip(*vectors, strict=True)) if vectors else [() for _ in range(width)]
    values, status_columns, stamps = result.values, result.statuses, result.event_timestamps
    native = result._native
    for name, pos, convert, allowed in zip(req.names, positions, req.converters, req.allowed,
                                           strict=True):
        column = list(stored[pos])
        column_statuses = statuses[:]
        if not set(map(type, column)) <= allowed:
            for i, value in enumerate(column):
                if type(value) not in allowed:
                    column[i], column_statuses[i] = None, CORRUPT
                    result.corrupt += 1
        if convert is not None:
            try:
                column = [None if v is None else convert(v) for v in column]
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                column = _convert_each(column, convert, column_statuses, result)
        elif float not in allowed or _finite(column):
            native[name] = column  # msgpack gave numbers, strings, booleans or None
        values[name] = column
        status_columns[name] = column_statuses
        stamps[name] = events[:]
    result.corrupt += len(corrupt) * len(positions)


def _decode_windows(req: _ViewRequest, positions: tuple[int, ...], width: int,
                    raws: list[bytes | None], now: int, result: OnlineResult) -> None:
    """Stored tile states of a view of aggregations -> each requested aggregation's value at
    ``now`` (README rule 9). An entity without state has an empty window (count 0, others
    None), which is a value like any other: PRESENT. Only an unreadable state is CORRUPT."""
    vectors, events, corrupt = unpack(raws, width)
    broken = set(corrupt)
    for name, pos, feature, convert in zip(req.names, positions, req.features, req.converters,
                                           strict=True):
        states = [None if raw is None or i in broken else vector[pos]
                  for i, (raw, vector) in enumerate(zip(raws, vectors, strict=True))]
        column, bad = window_values(feature, states, now)
        statuses = [PRESENT] * len(raws)
        if convert is not None:
            column = _convert_each(column, convert, statuses, result)
        for i in (*broken, *bad):
            column[i], statuses[i] = None, CORRUPT
        result.corrupt += len(broken) + len(bad)
        result.values[name] = column
        result.statuses[name] = statuses
        result.event_timestamps[name] = events[:]


def _convert_each(column: list[Any], convert: Callable[[Any], Any], statuses: list[str],
                  result: OnlineResult) -> list[Any]:
    """``convert`` value by value: a value it refuses becomes CORRUPT (None)."""
    converted: list[Any] = []
    for i, value in enumerate(column):
        try:
            converted.append(None if value is None else convert(value))
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            converted.append(None)
            statuses[i] = CORRUPT
            result.corrupt += 1
    return converted


def _entity_columns(entities: Mapping[str, Sequence[Any]], key_columns: list[str],
                    max_entities: int) -> dict[str, list[Any]]:
    """Validated copies of the requested key columns."""
    if type(entities) is not dict and not isinstance(entities, Mapping):
        raise RequestError("entities must map each join key to a list of values")
    if len(entities) != len(key_columns) or any(k not in entities for k in key_columns):
        missing = [k for k in key_columns if k not in entities]
        extra = [k for k in entities if k not in key_columns]
        if missing:
            near = did_you_mean(str(extra[0]), missing) if extra else ""
            raise RequestError(f"missing entity key column(s): {', '.join(missing)} "
                               f"(this request needs: {', '.join(key_columns)})"
                               + (f"; got {_shown(str(extra[0]))}: {near.strip()}" if near
                                  else ""))
        raise RequestError(f"unexpected entity key column(s): {', '.join(map(str, extra))} "
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
