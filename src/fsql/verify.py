"""``fsql verify``: prove on real data that serving equals training.

For each online view: take N entities (or all), read their stored values from Redis, and
recompute the expected values offline through the *training* path — the point-in-time join of
a spine (entity, the sync's as-of time) against the view restricted to rows known at the sync's
watermark. The sync itself used a different query (latest row per entity), so agreement checks
one path against the other. Floats are compared with a relative tolerance of 1e-9 (both paths
read the same doubles; the tolerance only absorbs summation order); types must match exactly.
The stored event (and created) timestamps must equal the chosen row's: the store serves them
and its write guard orders updates by them. A stored value that cannot be decoded is reported
as skew (``(corrupt value)``), like a wrong one.

Each view also lists the training sets that use it but were built with another definition of it
than the one online (``stale_training_sets``): a model trained on them is served values
computed another way.

The sample (``--sample N``) is N entities drawn by a seeded hash, a new seed each run so that
repeated runs cover different entities; ``--seed`` repeats one run's sample.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
from sqlglot import exp

from fsql.compile import CompiledNode, CompiledProject, built_definitions, plan_training_set
from fsql.definitions import FeatureRef, FeatureView
from fsql.engines.base import Engine
from fsql.errors import OnlineStoreError, RequestError
from fsql.graph import Selectors
from fsql.online.base import OnlineStore
from fsql.online.keys import HEADER, ViewLayout, converter, from_micros, iso_utc, micros
from fsql.online.sync import layout_for, view_join
from fsql.online.tiles import window_value
from fsql.pit import (
    ROW_ID,
    LatestPlan,
    PitStrategy,
    ViewJoin,
    audit_column,
    audit_created_column,
    common_instant,
    window_values_at,
)

REL_TOL = 1e-9
EXAMPLES = 5
_SPINE = "__fsql_verify_spine"
_KNOWN = "__fsql_verify_known"


@dataclass
class ViewCheck:
    """Verification of one view."""

    view: str
    as_of: str
    seed: int | None = None  # of the sample (None: every entity was checked)
    entities: int = 0
    matched: int = 0
    mismatched: int = 0
    expired_since_sync: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    #: training sets using the view that were built with another definition of it than the
    #: online data's: a model trained on them is served values computed another way
    stale_training_sets: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"view": self.view, "as_of": self.as_of, "seed": self.seed,
                "entities": self.entities,
                "matched": self.matched, "mismatched": self.mismatched,
                "expired_since_sync": self.expired_since_sync,
                "mismatches_by_feature": self.by_feature,
                "stale_training_sets": self.stale_training_sets,
                "examples": [{k: repr(v) if k in ("online", "expected") else v
                              for k, v in e.items()} for e in self.examples]}


def same(online: Any, expected: Any) -> bool:
    """Equal values of exactly the same type (floats within ``REL_TOL``)."""
    if online is None or expected is None:
        return online is None and expected is None
    if type(online) is not type(expected):
        return False
    if isinstance(online, float):
        return online == expected or math.isclose(online, expected, rel_tol=REL_TOL) or (
            math.isnan(online) and math.isnan(expected))
    return bool(online == expected)


def _sample_keys(engine: Engine, node: CompiledNode, keys: tuple[str, ...],
                 sample: int | None, seed: int | None) -> list[tuple[Any, ...]]:
    columns = [exp.column(k, quoted=True) for k in keys]
    query = (exp.select(*columns).distinct()
             .from_(exp.to_table(node.relation, quoted=True))
             .where(exp.and_(*[c.copy().is_(exp.null()).not_() for c in columns])))
    if sample is not None:  # a pseudo-random sample that the seed reproduces
        order = exp.func("hash", *[c.copy() for c in columns], exp.Literal.number(seed or 0))
        query = exp.select("*").from_(query.subquery("k")).order_by(order).limit(sample)
    table = engine.fetch_arrow(query)
    return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))


def check_view(project: CompiledProject, engine: Engine, store: OnlineStore,
               strategy: PitStrategy, node: CompiledNode, sample: int | None,
               seed: int | None = None) -> ViewCheck:
    import pyarrow as pa

    view = node.definition
    assert isinstance(view, FeatureView)
    join = view_join(node, project)
    layout = layout_for(node, join, store.config.namespace)
    meta = store.meta(layout)
    if "generation" not in meta:
        raise OnlineStoreError(f"view '{view.name}' has never been synced; run fsql sync")
    if meta.get("schema") != layout.schema_fingerprint:
        raise OnlineStoreError(f"view '{view.name}': the online data was written by another "
                               "definition (features or types changed); run fsql sync")
    as_of = int(meta["as_of"])
    result = ViewCheck(view.name, from_micros(as_of, zoned=True).isoformat(), seed,
                       stale_training_sets=stale_training_sets(project, node, meta))
    keys = _sample_keys(engine, node, join.keys, sample, seed)
    result.entities = len(keys)
    if not keys:
        return result

    # the view as it was at the sync: rows known at the watermark
    known = exp.select("*").from_(exp.to_table(node.relation, quoted=True))
    if meta.get("watermark"):
        plan = LatestPlan(join, as_of)
        known = known.where(exp.LTE(this=plan.basis(), expression=common_instant(
            join, int(meta["watermark"]))[1]))
    if view.aggregations:  # the rows the sync read: events up to its as_of
        event, limit = common_instant(join, as_of)
        known = known.where(exp.LTE(this=event, expression=limit))
    engine.replace_relation(_KNOWN, known, "view")
    if view.aggregations:
        _check_windows(result, engine, store, strategy, node, join, layout, keys)
        return result
    known_node = replace(node, relation=_KNOWN)
    spine = pa.table({**{k: pa.array([key[i] for key in keys]) for i, k in enumerate(join.keys)},
                      "__fsql_as_of": pa.array([as_of] * len(keys), pa.timestamp("us", "UTC")),
                      ROW_ID: pa.array(range(len(keys)), pa.int64())})
    engine.register(_SPINE, spine)
    try:
        relation = exp.to_table(_SPINE, quoted=True)
        columns = engine.describe(exp.select("*").from_(relation))
        nodes = {**project.nodes, node.id: known_node}
        pit = plan_training_set(project.spec, [FeatureRef(view.name, None, 0)], relation, columns,
                                "__fsql_as_of", "plain", nodes, spine_output=(),
                                order_by=(ROW_ID,))
        expected = engine.fetch_arrow(strategy.query(replace(pit, audit=True))).to_pylist()
    finally:
        engine.unregister(_SPINE)
    [(_, raws)] = store.read([(layout, keys)])
    _compare(result, layout, view, as_of, keys, raws, expected)
    return result


def _compare(result: ViewCheck, layout: ViewLayout, view: FeatureView, as_of: int,
             keys: list[tuple[Any, ...]], raws: list[bytes | None],
             expected: list[dict[str, Any]]) -> None:
    now = int(time.time() * 1_000_000)
    ttl = view.ttl.seconds * 1_000_000 if view.ttl else None
    names = [f.name for f in view.features]
    for key, raw, row in zip(keys, raws, expected, strict=True):
        event = row[audit_column(view.name)]
        event_us = None if event is None else micros(event)
        wanted_present = event_us is not None and (ttl is None or event_us >= as_of - ttl)
        wanted = [row[n] for n in names]
        if raw is None:
            if not wanted_present:
                result.matched += 1
            elif ttl is not None and event_us is not None and event_us + ttl < now:
                result.expired_since_sync += 1  # Redis dropped it at event time + ttl
            else:
                _mismatch(result, key, [("(missing online)", None, wanted)])
            continue
        decoded = _decode(layout, raw)
        if decoded is None:
            _mismatch(result, key, [(CORRUPT, raw[:60], wanted if wanted_present else None)])
            continue
        stored_event, stored_created, got = decoded
        if not wanted_present:
            _mismatch(result, key, [("(not expected online)", got, None)])
            continue
        bad = [(n, g, w) for n, g, w in zip(names, got, wanted, strict=True) if not same(g, w)]
        # the header orders writes: a wrong one is served, and blocks later updates
        times = [("(event timestamp)", stored_event, event_us)]
        if view.created_timestamp:
            created = row[audit_created_column(view.name)]
            times.append(("(created timestamp)", stored_created,
                          None if created is None else micros(created)))
        bad += [(what, _instant(got_us), _instant(wanted_us))
                for what, got_us, wanted_us in times if got_us != wanted_us]
        if bad:
            _mismatch(result, key, bad)
        else:
            result.matched += 1


def _check_windows(result: ViewCheck, engine: Engine, store: OnlineStore,
                   strategy: PitStrategy, node: CompiledNode, join: ViewJoin,
                   layout: ViewLayout, keys: list[tuple[Any, ...]]) -> None:
    """A view of aggregations, checked at the current time: each sampled entity's values
    read from its online state now equal the training path's values now over the rows the
    last sync knew (``window_values_at`` on them)."""
    now = int(round(time.time() * 1_000_000))
    table = engine.fetch_arrow(window_values_at(
        join, now, strategy, {c.name: c.dtype for c in node.columns}, _KNOWN)).to_pylist()
    expected = {tuple(row[k] for k in join.keys): row for row in table}
    [(_, raws)] = store.read([(layout, keys)])
    names = [f.name for f in join.features]
    for key, raw in zip(keys, raws, strict=True):
        row = expected.get(key, {})
        wanted = [row.get(f.name, 0 if f.aggregation and f.aggregation.function == "count"
                          else None) for f in join.features]
        got: list[Any] = [0 if f.aggregation and f.aggregation.function == "count" else None
                          for f in join.features]
        if raw is not None:
            try:
                states = msgpack.unpackb(raw[HEADER:])
                got = []
                for feature, state in zip(join.features, states, strict=True):
                    value = window_value(feature, state, now)
                    convert = converter(feature)
                    got.append(value if value is None or convert is None else convert(value))
            except (ValueError, TypeError, ArithmeticError, IndexError,
                    msgpack.UnpackException):
                _mismatch(result, key, [(CORRUPT, raw[:60], wanted)])
                continue
        bad = [(n, g, w) for n, g, w in zip(names, got, wanted, strict=True) if not same(g, w)]
        if bad:
            _mismatch(result, key, bad)
        else:
            result.matched += 1


def stale_training_sets(project: CompiledProject, node: CompiledNode, meta: dict[str, str]
                        ) -> list[str]:
    """The training sets using ``node`` whose build record (``definitions``) holds another
    hash of it than the online data (``meta['definition']``). A training set never built is
    not stale (nothing was trained on it); an unreadable record is."""
    online = meta.get("definition")
    stale: list[str] = []
    for name, ts in sorted(project.training_sets.items()):
        if online is None or all(j.view.name != node.name for j in ts.plan.joins):
            continue
        built = built_definitions(ts.output)
        if built == {}:
            continue  # never built
        if built is None or built.get(node.id) != online:
            stale.append(name)
    return stale


#: what verify reports for a stored value that cannot be decoded
CORRUPT = "(corrupt value)"


def _decode(layout: ViewLayout, raw: bytes) -> tuple[int | None, int | None, list[Any]] | None:
    """A stored value's (event, created, features), or None when it cannot be decoded
    (written by something else, or damaged): skew to report, not a reason to stop."""
    try:
        return layout.decode(raw)
    except (ValueError, TypeError, ArithmeticError, msgpack.UnpackException):
        return None


def _instant(value: int | None) -> str | None:
    return None if value is None else iso_utc(value)


def _mismatch(result: ViewCheck, key: tuple[Any, ...],
              bad: list[tuple[str, Any, Any]]) -> None:
    """One entity that differs: counted once, and once per differing feature (or what)."""
    result.mismatched += 1
    for what, got, wanted in bad:
        result.by_feature[what] = result.by_feature.get(what, 0) + 1
        _example(result, key, what, got, wanted)


def _example(result: ViewCheck, key: tuple[Any, ...], feature: str, got: Any,
             wanted: Any) -> None:
    if len(result.examples) < EXAMPLES:
        result.examples.append({"entity": list(key), "feature": feature, "online": got,
                                "expected": wanted})


def verify(project: CompiledProject, engine: Engine, store: OnlineStore, strategy: PitStrategy,
           selectors: Selectors, sample: int | None, seed: int | None = None
           ) -> list[ViewCheck]:
    """Check ``sample`` entities per selected online view (all with None). The sample is
    drawn afresh on each run, so repeated runs cover different entities; ``seed`` (reported
    in each ``ViewCheck``) reproduces one run's sample."""
    chosen = project.graph.select(selectors)
    nodes = [n for n in sorted(project.nodes.values(), key=lambda n: n.name)
             if n.id in chosen and isinstance(n.definition, FeatureView) and n.definition.online]
    if not nodes:
        raise RequestError("no online feature views selected")
    if sample is None:
        seed = None
    elif seed is None:
        seed = secrets.randbelow(2**31)
    return [check_view(project, engine, store, strategy, node, sample, seed) for node in nodes]
