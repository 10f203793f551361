"""The one Jinja environment class fsql renders user templates with (SQL, macros, profiles.yml).

Jinja's immutable sandbox refuses attributes starting with ``_`` (``__globals__``,
``__class__``, ``__subclasses__``...), the internals of functions and frames, unsafe
``str.format`` fields and mutation of lists and dicts. Its default answer to an unsafe attribute
is an undefined value that fails only when used, and a later step can hide the reason (``x |
attr('__init__') | attr('__globals__')`` then reports a missing attribute); here the first
unsafe access fails at once, so every violation reads "unsafe template operation".
"""

from __future__ import annotations

from typing import Any, NoReturn

from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["Sandbox", "SecurityError"]


class Sandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` that raises ``SecurityError`` on the first unsafe
    attribute access."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")
