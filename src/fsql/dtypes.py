"""Feature types: the names analysts declare in YAML and how they match engine column types.

Types are compared as sqlglot ``DataType`` nodes, so the check does not depend on how one engine
spells a type (``BIGINT`` vs ``LONG``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from fsql.errors import did_you_mean

T = exp.DataType.Type

# declared name -> sqlglot type. One spelling per type: engine spellings are refused with the
# declared name to use instead (see ``_ENGINE_NAMES``).
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
#: engine spellings people write by habit -> the declared name to write instead
_ENGINE_NAMES = {"tinyint": "int8", "smallint": "int16", "int": "int32", "integer": "int32",
                 "bigint": "int64", "long": "int64", "float": "float32", "real": "float32",
                 "double": "float64", "boolean": "bool", "varchar": "string", "text": "string",
                 "str": "string"}
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
        """Parse a declared type name; raises ``ValueError`` naming the accepted types (and
        the one meant, for an engine spelling such as ``double`` or a near miss)."""
        key = text.strip().lower()
        if key in _SIMPLE:
            return cls(key, exp.DataType.build(_SIMPLE[key]))
        m = _DECIMAL.match(key)
        if m:
            p, s = int(m.group(1)), int(m.group(2))
            if not 1 <= p <= 38 or s > p:
                raise ValueError(f"decimal precision must be 1..38 and scale <= precision: {text}")
            return cls(f"decimal({p},{s})", exp.DataType.build(f"DECIMAL({p}, {s})"))
        meant = _ENGINE_NAMES.get(key)
        hint = f"did you mean '{meant}'? " if meant else did_you_mean(key, TYPE_NAMES)
        raise ValueError(f"unknown type '{text}'; {hint}use one of: {', '.join(TYPE_NAMES)}")

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
