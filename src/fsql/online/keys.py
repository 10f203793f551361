"""Online key layout and value encoding (format version 1).

Keys (one string value per view and entity, so each entity's feature vector is replaced
atomically)::

    {namespace}:v1:{view}:{generation}:{key}     key = join-key values joined by '|'
    {namespace}:v1:{view}:meta                   hash: generation, fingerprints, watermark...
    {namespace}:v1:lock                          the sync lock

Values::

    20 digits  event timestamp, microseconds since the epoch + 2**62 (zero-padded)
    20 digits  created timestamp, the same way (0 when the view has none)
    msgpack    array of the feature values in declared order

The 40-character header orders values by (event time, created time) as plain strings, so the
Redis-side write script can refuse to replace a newer value with an older one without decoding.
Timestamps travel as integer microseconds, dates as days since the epoch, decimals as strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast
from urllib.parse import quote

import msgpack

from fsql.definitions import Feature
from fsql.errors import RequestError

FORMAT = "v1"
HEADER = 40
_OFFSET = 2**62
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
INT_KEY, STR_KEY = "int", "str"


def stamp(micros: int | None) -> bytes:
    """A fixed-width, order-preserving text form of a microsecond timestamp (None lowest)."""
    return b"%020d" % ((micros if micros is not None else -_OFFSET) + _OFFSET)


def unstamp(text: bytes) -> int | None:
    value = int(text) - _OFFSET
    return None if value == -_OFFSET else value


def micros(value: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int, zoned: bool) -> dt.datetime:
    moment = _EPOCH + dt.timedelta(microseconds=value)
    return moment if zoned else moment.replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class ViewLayout:
    """How one feature view's rows become Redis keys and values."""

    namespace: str
    view: str
    key_columns: tuple[str, ...]
    key_kinds: tuple[str, ...]  # INT_KEY or STR_KEY per key column
    features: tuple[Feature, ...]

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:{FORMAT}:{self.view}"

    @property
    def meta_key(self) -> str:
        return f"{self.prefix}:meta"

    def generation_pattern(self, generation: int) -> str:
        """A SCAN pattern for every key of one generation (glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:{generation}:*"

    @property
    def schema_fingerprint(self) -> str:
        """What readers depend on: key columns and kinds, feature names and types."""
        payload = json.dumps([self.key_columns, self.key_kinds,
                              [(f.name, f.dtype.name) for f in self.features]])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def key(self, generation: int, values: tuple[Any, ...]) -> bytes:
        parts = [str(v) if kind == INT_KEY else quote(str(v), safe="")
                 for v, kind in zip(values, self.key_kinds, strict=True)]
        return f"{self.prefix}:{generation}:{'|'.join(parts)}".encode()

    def coerce_key(self, column: str, value: Any, from_text: bool = False) -> Any:
        """Check (and with ``from_text``, parse) one requested key value."""
        kind = self.key_kinds[self.key_columns.index(column)]
        if kind == INT_KEY:
            if from_text and isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    pass
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise RequestError(f"key '{column}' of view '{self.view}' must be an integer, "
                               f"got {value!r}")
        if isinstance(value, str):
            return value
        raise RequestError(f"key '{column}' of view '{self.view}' must be a string, got {value!r}")

    def encode(self, event: int | None, created: int | None, values: list[Any]) -> bytes:
        return stamp(event) + stamp(created) + cast(bytes, msgpack.packb(values, use_bin_type=True))

    def decode(self, raw: bytes) -> tuple[int | None, int | None, list[Any]]:
        values = msgpack.unpackb(raw[HEADER:], raw=False)
        return unstamp(raw[:20]), unstamp(raw[20:HEADER]), [
            _decode_value(v, f) for v, f in zip(values, self.features, strict=True)]


def _decode_value(value: Any, feature: Feature) -> Any:
    if value is None:
        return None
    kind = feature.dtype.name
    if kind in ("timestamp", "timestamptz"):
        return from_micros(value, zoned=kind == "timestamptz")
    if kind == "date":
        return _EPOCH_DATE + dt.timedelta(days=value)
    if kind.startswith("decimal"):
        return Decimal(value)
    return value


def encode_column(values: list[Any], feature: Feature) -> list[Any]:
    """Python values of one feature column -> msgpack-ready values."""
    kind = feature.dtype.name
    if kind in ("timestamp", "timestamptz"):
        return [None if v is None else micros(v) for v in values]
    if kind == "date":
        return [None if v is None else (v - _EPOCH_DATE).days for v in values]
    if kind.startswith("decimal"):
        return [None if v is None else str(v) for v in values]
    return values
