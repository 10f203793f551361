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

from fsql.definitions import Feature, FeatureRef, FeatureView
from fsql.errors import OnlineStoreError, RequestError, StaleDefinitionError
from fsql.loader import ProjectSpec
from fsql.online.keys import STR_KEY, ViewLayout, from_micros
from fsql.online.redis_store import RedisStore

PRESENT, MISSING, EXPIRED = "PRESENT", "MISSING", "EXPIRED"
DEFAULT_MAX_ENTITIES = 1000


@dataclass(frozen=True, slots=True)
class _ViewRequest:
    view: FeatureView
    keys: tuple[str, ...]
    features: tuple[Feature, ...]  # requested, in request order
    positions: tuple[int, ...]  # index of each requested feature in the stored vector
    names: tuple[str, ...]  # output column names


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
        for name, values in self.values.items():
            results.append({"values": [_json_value(v) for v in values],
                            "statuses": self.statuses[name],
                            "event_timestamps": [_iso(s) for s in self.event_timestamps[name]]})
        return {"metadata": {"feature_names": [*self.entities, *self.values]},
                "results": results}


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _iso(micros: int | None) -> str | None:
    return None if micros is None else from_micros(micros, zoned=True).isoformat()


class OnlineService:
    """Resolves feature requests against the project and reads them from the store."""

    def __init__(self, spec: ProjectSpec, store: RedisStore,
                 clock: Callable[[], float] | None = None,
                 max_entities: int = DEFAULT_MAX_ENTITIES) -> None:
        self.spec = spec
        self.store = store
        self.clock = clock or store.clock
        self.max_entities = max_entities
        self._plans: dict[tuple[str, ...], tuple[list[_ViewRequest], list[str]]] = {}
        self._layouts: dict[str, ViewLayout] = {}

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, features: str | Sequence[str]) -> tuple[list[_ViewRequest], list[str]]:
        """Feature names (``view``/``view.feature``) or a training set name -> per-view reads
        and the entity key columns the request needs. Cached per request shape."""
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
            requests.append(_ViewRequest(view, keys, tuple(feats),
                                         tuple(view.features.index(f) for f in feats), names))
        self._plans[cache_key] = (requests, key_columns)
        return requests, key_columns

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
        requests, key_columns = self.resolve(features)
        rows = _entity_rows(entities, key_columns, self.max_entities)
        self._learn(requests)
        owner = {k: self._layouts[r.view.name] for r in reversed(requests) for k in r.keys}
        rows = [{k: owner[k].coerce_key(k, row[k], from_text) for k in key_columns}
                for row in rows]
        reads = [(self._layouts[req.view.name], [tuple(row[k] for k in req.keys) for row in rows])
                 for req in requests]
        replies = self.store.read(reads)
        now = int(self.clock() * 1_000_000)
        result = OnlineResult({k: [row[k] for row in rows] for k in key_columns}, {})
        for req, (layout, _), (meta, raws) in zip(requests, reads, replies, strict=True):
            if self._check(req, layout, meta) is not layout:
                raise OnlineStoreError(f"view '{req.view.name}' changed its key types during "
                                       "the request; retry")
            self._decode(req, layout, raws, now, result)
        return result

    def _check(self, req: _ViewRequest, layout: ViewLayout, meta: dict[str, str]) -> ViewLayout:
        """Fail on views never synced or synced by another definition; learn key kinds."""
        if "generation" not in meta:
            raise OnlineStoreError(f"feature view '{req.view.name}' has no online data yet; "
                                   "run: fsql sync")
        kinds = tuple(json.loads(meta.get("key_kinds", "[]")))
        if kinds != layout.key_kinds:
            layout = ViewLayout(layout.namespace, layout.view, layout.key_columns, kinds,
                                layout.features)
        if meta.get("schema") != layout.schema_fingerprint:
            self._layouts.pop(req.view.name, None)
            raise StaleDefinitionError(
                f"the online data of view '{req.view.name}' was written by a different "
                "definition (features, types or keys changed since the last sync); run "
                "fsql sync to refresh it before serving")
        self._layouts[req.view.name] = layout
        return layout

    def _decode(self, req: _ViewRequest, layout: ViewLayout, raws: list[bytes | None],
                now: int, result: OnlineResult) -> None:
        ttl = req.view.ttl.seconds * 1_000_000 if req.view.ttl else None
        columns: list[list[Any]] = [[] for _ in req.names]
        statuses: list[list[str]] = [[] for _ in req.names]
        stamps: list[list[int | None]] = [[] for _ in req.names]
        for raw in raws:
            if raw is None:
                status, event, values = MISSING, None, None
            else:
                event, _, decoded = layout.decode(raw)
                expired = ttl is not None and event is not None and now > event + ttl
                status, values = (EXPIRED, None) if expired else (PRESENT, decoded)
            for i, pos in enumerate(req.positions):
                columns[i].append(None if values is None else values[pos])
                statuses[i].append(status)
                stamps[i].append(event)
        for i, name in enumerate(req.names):
            result.values[name] = columns[i]
            result.statuses[name] = statuses[i]
            result.event_timestamps[name] = stamps[i]


def _entity_rows(entities: Mapping[str, Sequence[Any]], key_columns: list[str],
                 max_entities: int) -> list[dict[str, Any]]:
    if not isinstance(entities, Mapping):
        raise RequestError("entities must map each join key to a list of values")
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
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise RequestError(f"entity key '{name}' must be a list of values")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise RequestError("entity key columns must have the same length")
    count = lengths.pop() if lengths else 0
    if count > max_entities:
        raise RequestError(f"too many entities: {count} (limit {max_entities} per request)")
    return [{k: columns[k][i] for k in key_columns} for i in range(count)]

