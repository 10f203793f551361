"""Stored feature vectors, read by feature name: where each feature sits in a view's vectors
(from the view's online metadata, whatever definition wrote them), and the decoding of raw
stored values that tells a corrupt value from a good one instead of failing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from fsql.definitions import Feature, FeatureView
from fsql.errors import OnlineStoreError, StaleDefinitionError
from fsql.online.keys import HEADER, NO_STAMP, ViewLayout, schema_fingerprint

_OFFSET = -NO_STAMP  # a header's event time is its number minus this


@dataclass(frozen=True, slots=True)
class StoredView:
    """What a view's online metadata says is stored: the key kinds (in ``layout``) and where
    each feature sits in the stored vectors, with its type, so a reader finds features by
    name whatever definition wrote them (a feature added by a later sync moves nothing)."""

    layout: ViewLayout
    features: dict[str, tuple[int, str]]  # feature name -> (index in the vector, type name)
    width: int  # features per stored vector
    # positions already answered, by the identity of the features asked for (a cached request
    # plan asks with the same tuple every time): the per-request cost is one dict lookup
    _answered: dict[int, tuple[Sequence[Feature], tuple[int, ...]]] = field(
        default_factory=dict, compare=False, repr=False)

    def positions(self, view: str, features: Sequence[Feature]) -> tuple[int, ...]:
        """Where ``features`` are; fails naming those not stored as defined."""
        answered = self._answered.get(id(features))
        if answered is not None and answered[0] is features:
            return answered[1]
        if len(self._answered) >= 1024:
            self._answered.clear()
        found = [self.features.get(f.name) for f in features]
        bad = [f.name for f, at in zip(features, found, strict=True)
               if at is None or at[1] != f.stored_type]
        if bad:
            raise StaleDefinitionError(
                f"feature(s) {', '.join(bad)} of view '{view}' are not in the online "
                "data with their defined type (added or retyped since the last sync); run fsql "
                "sync to publish them")
        positions = tuple(at[0] for at in found if at is not None)
        self._answered[id(features)] = (features, positions)
        return positions


def stored_view(view: FeatureView, layout: ViewLayout, meta: Mapping[str, str]) -> StoredView:
    """Check a view's meta (``OnlineStore.READ_META``) against its definition: fails on a view
    never synced or synced with other join keys; tells where each stored feature is. Pure: the
    health check runs it off the request thread."""
    if "generation" not in meta:
        raise OnlineStoreError(f"feature view '{view.name}' has no online data yet; "
                               "run: fsql sync")
    try:
        kinds = tuple(json.loads(meta.get("key_kinds", "[]")))
        stored = ([(str(n), str(t)) for n, t in json.loads(meta["features"])]
                  if "features" in meta else
                  [(f.name, f.stored_type) for f in view.features])  # written before the field
    except (ValueError, TypeError) as err:
        raise OnlineStoreError(f"the online metadata of view '{view.name}' is unreadable "
                               f"({err}); run fsql sync --full-refresh") from None
    if meta.get("schema") != schema_fingerprint(layout.key_columns, kinds, stored):
        raise StaleDefinitionError(
            f"the online data of view '{view.name}' was written by a different definition "
            "(join keys changed since the last sync, or features too for data synced by an "
            "older fsql); run fsql sync to refresh it before serving")
    if kinds != layout.key_kinds:
        layout = ViewLayout(layout.namespace, layout.view, layout.key_columns, kinds,
                            layout.features)
    return StoredView(layout, {n: (i, t) for i, (n, t) in enumerate(stored)}, len(stored))


# Event times a header may hold: those of datetime (years 1 to 9999), in microseconds
_MIN_EVENT, _MAX_EVENT = -62_135_596_800_000_000, 253_402_300_799_999_999
_UNDECODABLE = (ValueError, TypeError, msgpack.exceptions.UnpackException)


def unpack(raws: list[bytes | None], width: int
           ) -> tuple[list[list[Any]], list[int | None], list[int]]:
    """Stored values of one view (None: no value) -> feature vectors (all None where there
    is no value), event times, and the positions of values that cannot be decoded (not this
    format, another number of features, an event time out of range; their vector is all None
    too). Column-wise when every value is well formed (the usual case), else value by value."""
    unpack = msgpack.unpackb
    empty: list[Any] = [None] * width
    try:  # the usual case, checked column-wise: every value well formed
        vectors = [empty if raw is None else unpack(raw[HEADER:]) for raw in raws]
        events: list[int | None] = [None if raw is None else int(raw[:20]) - _OFFSET
                                    for raw in raws]
        if NO_STAMP in events:  # a value written without event time (never by fsql sync)
            events = [None if e == NO_STAMP else e for e in events]
        known = [e for e in events if e is not None]
        if (set(map(type, vectors)) <= {list} and set(map(len, vectors)) <= {width}
                and (not known or (_MIN_EVENT <= min(known) and max(known) <= _MAX_EVENT))):
            return vectors, events, []
    except _UNDECODABLE:
        pass
    vectors, events, corrupt = [], [], []
    for i, raw in enumerate(raws):
        row = None if raw is None else _unpack_one(raw, width)
        if row is None:
            vectors.append(empty)
            events.append(None)
            if raw is not None:
                corrupt.append(i)
        else:
            events.append(row[0])
            vectors.append(row[1])
    return vectors, events, corrupt


def _unpack_one(raw: bytes, width: int) -> tuple[int | None, list[Any]] | None:
    """(event time, feature vector) of one stored value, None when it cannot be decoded."""
    try:
        vector = msgpack.unpackb(raw[HEADER:])
        event = int(raw[:20]) - _OFFSET
    except _UNDECODABLE:
        return None
    if type(vector) is not list or len(vector) != width:
        return None
    if event == NO_STAMP:
        return None, vector
    return (event, vector) if _MIN_EVENT <= event <= _MAX_EVENT else None
