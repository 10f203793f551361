"""Feature types: the names analysts declare in YAML and how they match engine column types.

Types are compared as sqlglot ``DataType`` nodes, so the check does not depend on how one engine
spells a type (``BIGINT`` vs ``LONG``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

T = exp.DataType.Type

# declared name -> sqlglot type. One canonical spelling per type; aliases below.
_SIMPLE: dict[str, Any] = {
    "int8": T.TINYINT,
    "int16": T.SMALLINT,
    "int32": T.INT,
    "int64": T.BIGINT,
    "float32": T.FLOAT,
    "float64": T.DOUBLE,
    "string": T.VARCHAR,
    "bool": T.BOOLEAN,
    "date": T.DATE,
    "timestamp": T.TIMESTAMP,
    "timestamptz": T.TIMESTAMPTZ,
}
_ALIASES = {"bigint": "int64", "double": "float64", "boolean": "bool", "varchar": "string"}
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")

TYPE_NAMES = sorted(_SIMPLE) + ["decimal(p,s)"]

# Column types accepted for event/created timestamps (compared as instants, see pit.py).
TIME_TYPES = {T.TIMESTAMP, T.TIMESTAMPNTZ, T.TIMESTAMPTZ, T.TIMESTAMP_S, T.TIMESTAMP_MS,
              T.TIMESTAMP_NS, T.DATE}


@dataclass(frozen=True, slots=True)
class FeatureType:
    """A declared feature type, e.g. ``int64`` or ``decimal(18,2)``."""

    name: str
    sql: exp.DataType

    @classmethod
    def parse(cls, text: str) -> FeatureType:
        """Parse a declared type name; raises ``ValueError`` naming the accepted types."""
        key = text.strip().lower()
        key = _ALIASES.get(key, key)
        if key in _SIMPLE:
            return cls(key, exp.DataType.build(_SIMPLE[key]))
        m = _DECIMAL.match(key)
        if m:
            p, s = int(m.group(1)), int(m.group(2))
            if not 1 <= p <= 38 or s > p:
                raise ValueError(f"decimal precision must be 1..38 and scale <= precision: {text}")
            return cls(f"decimal({p},{s})", exp.DataType.build(f"DECIMAL({p}, {s})"))
        raise ValueError(f"unknown type '{text}'; use one of: {', '.join(TYPE_NAMES)}")

    def matches(self, actual: exp.DataType) -> bool:
        """True when an engine column of type ``actual`` holds exactly this type."""
        return normalize(actual) == normalize(self.sql)

    def __str__(self) -> str:
        return self.name


_STRING_TYPES = {T.VARCHAR, T.TEXT, T.NVARCHAR, T.CHAR, T.NCHAR}


def normalize(dtype: exp.DataType) -> exp.DataType:
    """One spelling per type: engines say VARCHAR, TEXT or STRING for strings, and DuckDB's
    TIMESTAMP parses as TIMESTAMPNTZ (a naive timestamp)."""
    if dtype.this in _STRING_TYPES:
        return exp.DataType.build(T.VARCHAR)
    if dtype.this == T.TIMESTAMPNTZ:
        return exp.DataType.build(T.TIMESTAMP)
    return dtype


def engine_type(type_text: str, dialect: str) -> exp.DataType:
    """Parse a type as an engine prints it (``DESCRIBE``) into a sqlglot ``DataType``."""
    return exp.DataType.build(type_text, dialect=dialect)


def declared_name(actual: exp.DataType) -> str | None:
    """The fsql type name for an engine type, if there is one (used in hints)."""
    actual = normalize(actual)
    for name, t in _SIMPLE.items():
        if actual.this == t and not actual.expressions:
            return name
    if actual.this == T.DECIMAL and len(actual.expressions) == 2:
        p, s = (e.this.this for e in actual.expressions)
        return f"decimal({p},{s})"
    return None
